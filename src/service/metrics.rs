//! This process's counters, in the Prometheus text format: what operators graph and alarm on.
//! Each process counts its own; a scraper sums them. Counters only ever grow, so a restart
//! shows as a reset, which Prometheus' `rate()` handles.
//!
//! Besides the redemption counters: every HTTP request by method, route template and status,
//! every error response by its stable code, and a latency histogram per route. Gauges of the
//! database pool and of the job runner's backlog are read from the store at each scrape
//! ([`scrape`]), so they are never stale and cost nothing between scrapes.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::store::{JobCounts, PoolUse, Store, StoreResult};

/// Upper bounds of the latency histogram's buckets, in microseconds (Prometheus' `le`, shown in
/// seconds): from 1 ms, a read from a warm pool, to 10 s, near the API's 15 s request timeout;
/// roughly ×2.5 apart, so a p99 is read within one step. Above the last is `+Inf`.
pub const LATENCY_BUCKETS_MICROS: [u64; 13] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000,
];

/// The route label of a request no route matched: one series for every unknown path, so a
/// scan of random paths cannot grow the metrics.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The statuses of the job runner's tasks that are shown, by apalis' name and as labelled;
/// any other is counted as `other`. `Done` is not read (see the store's `job_counts`).
const TASK_STATUSES: [(&str, &str); 5] = [
    ("Pending", "pending"),
    ("Queued", "queued"),
    ("Running", "running"),
    ("Failed", "failed"),
    ("Killed", "killed"),
];

/// Latencies of one route: a fixed-bucket histogram.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    /// Observations per bucket, not cumulative: `counts[i]` are those at most
    /// `LATENCY_BUCKETS_MICROS[i]` and over the bound before it; the last is over every bound.
    counts: [u64; LATENCY_BUCKETS_MICROS.len() + 1],
    /// The sum of every observation, in microseconds: 584,000 years before it wraps.
    sum_micros: u64,
}

impl Histogram {
    /// Counts one observation.
    pub fn observe(&mut self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BUCKETS_MICROS.partition_point(|&bound| bound < micros);
        self.counts[bucket] += 1;
        self.sum_micros = self.sum_micros.saturating_add(micros);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Appends its `_bucket` (cumulative, up to `+Inf`), `_sum` (seconds) and `_count` lines
    /// for the series `name{labels}`; `labels` are rendered pairs, without braces.
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut below = 0;
        for (bound, n) in LATENCY_BUCKETS_MICROS.iter().zip(&self.counts) {
            below += n;
            // Prometheus writes latency in seconds; a timing, never money.
            let le = *bound as f64 / 1e6;
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {below}");
        }
        // +Inf is the count itself, so the two always agree.
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let sum = self.sum_micros as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// One request as the HTTP layer saw it, to be counted.
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest {
    /// The method, from a fixed list (`other` for any method not on it).
    pub method: &'static str,
    /// The route's template (`/v1/accounts/{id}/redemptions`), or [`UNMATCHED_ROUTE`].
    pub route: &'static str,
    /// The status answered.
    pub status: u16,
    /// The stable code of an error response.
    pub error: Option<&'static str>,
    /// From the request's arrival to its response's head.
    pub elapsed: Duration,
}

/// What the HTTP layer counts. Every label is a `&'static str` from a fixed list or a status,
/// so no caller can add a series.
#[derive(Debug, Default)]
struct Http {
    /// Requests by method, route and status.
    requests: BTreeMap<(&'static str, &'static str, u16), u64>,
    /// Error responses by stable code.
    errors: BTreeMap<&'static str, u64>,
    /// Latencies by method and route.
    latency: BTreeMap<(&'static str, &'static str), Histogram>,
}

/// The counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Redemption attempts by outcome: `ok` or the refusal's stable code.
    redemptions: Mutex<BTreeMap<&'static str, u64>>,
    /// Attempts refused because their caller's window was full.
    callers_throttled: AtomicU64,
    /// HTTP requests: one lock per request, held for a few map updates, and one snapshot
    /// per scrape, so a histogram's buckets and count always agree.
    http: Mutex<Http>,
}

impl Metrics {
    /// Counts a redemption attempt's outcome.
    pub(crate) fn redemption(&self, outcome: &'static str) {
        let mut counts = self.redemptions.lock().unwrap_or_else(|e| e.into_inner());
        *counts.entry(outcome).or_default() += 1;
    }

    /// Counts an attempt refused by its caller's window: the failure-rate alarm's metric.
    pub(crate) fn caller_throttled(&self) {
        self.callers_throttled.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an answered HTTP request: its route and status, its error's code, its latency.
    pub fn http_request(&self, request: HttpRequest) {
        let mut http = self.http.lock().unwrap_or_else(|e| e.into_inner());
        *http
            .requests
            .entry((request.method, request.route, request.status))
            .or_default() += 1;
        if let Some(code) = request.error {
            *http.errors.entry(code).or_default() += 1;
        }
        http.latency
            .entry((request.method, request.route))
            .or_default()
            .observe(request.elapsed);
    }

    /// Attempts so far with this outcome.
    pub fn redemptions(&self, outcome: &str) -> u64 {
        let counts = self.redemptions.lock().unwrap_or_else(|e| e.into_inner());
        counts.get(outcome).copied().unwrap_or(0)
    }

    /// Attempts refused so far because their caller's window was full.
    pub fn callers_throttled(&self) -> u64 {
        self.callers_throttled.load(Ordering::Relaxed)
    }

    /// Every counter in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP tender_redemptions_total Redemption attempts by outcome.\n\
             # TYPE tender_redemptions_total counter\n",
        );
        let counts = self.redemptions.lock().unwrap_or_else(|e| e.into_inner());
        for (outcome, n) in counts.iter() {
            let _ = writeln!(out, "tender_redemptions_total{{outcome=\"{outcome}\"}} {n}");
        }
        drop(counts);
        let _ = write!(
            out,
            "# HELP tender_redeem_caller_throttled_total Redemption attempts refused because \
             their caller's window was full.\n\
             # TYPE tender_redeem_caller_throttled_total counter\n\
             tender_redeem_caller_throttled_total {}\n",
            self.callers_throttled()
        );
        self.render_http(&mut out);
        out
    }

    /// The HTTP counters and histograms, from one snapshot.
    fn render_http(&self, out: &mut String) {
        let http = self.http.lock().unwrap_or_else(|e| e.into_inner());
        out.push_str(
            "# HELP tender_http_requests_total HTTP requests answered, by method, route \
             template and status.\n\
             # TYPE tender_http_requests_total counter\n",
        );
        for ((method, route, status), n) in &http.requests {
            let _ = writeln!(
                out,
                "tender_http_requests_total{{method=\"{method}\",route=\"{}\",\
                 status=\"{status}\"}} {n}",
                escape(route)
            );
        }
        out.push_str(
            "# HELP tender_http_errors_total HTTP error responses, by stable code.\n\
             # TYPE tender_http_errors_total counter\n",
        );
        for (code, n) in &http.errors {
            let _ = writeln!(
                out,
                "tender_http_errors_total{{code=\"{}\"}} {n}",
                escape(code)
            );
        }
        out.push_str(
            "# HELP tender_http_request_duration_seconds Time from a request's arrival to its \
             response's head, by method and route template.\n\
             # TYPE tender_http_request_duration_seconds histogram\n",
        );
        for ((method, route), histogram) in &http.latency {
            let labels = format!("method=\"{method}\",route=\"{}\"", escape(route));
            histogram.render(out, "tender_http_request_duration_seconds", &labels);
        }
    }
}

/// Every metric: `metrics`' counters, then the database pool's use and the job runner's
/// backlog read from `store` now. When the backlog cannot be read (the database is down),
/// the counters are still served, `tender_jobs_read_ok` says 0, and the cause is in the log.
pub async fn scrape<S: Store>(metrics: &Metrics, store: &S) -> String {
    let mut out = metrics.render();
    render_pool(&mut out, store.pool_use());
    render_jobs(&mut out, store.job_counts().await);
    out
}

/// The pool gauges.
fn render_pool(out: &mut String, pool: PoolUse) {
    let _ = write!(
        out,
        "# HELP tender_db_connections The database pool's open connections, by state.\n\
         # TYPE tender_db_connections gauge\n\
         tender_db_connections{{state=\"in_use\"}} {}\n\
         tender_db_connections{{state=\"idle\"}} {}\n\
         # HELP tender_db_connections_max The most connections the database pool opens.\n\
         # TYPE tender_db_connections_max gauge\n\
         tender_db_connections_max {}\n",
        pool.in_use, pool.idle, pool.max
    );
}

/// The job runner's gauges: outbox rows by job, and tasks by queue and status, each status of
/// a queue shown (0 too) once the queue has any task not done, so a graph does not vanish.
fn render_jobs(out: &mut String, counts: StoreResult<JobCounts>) {
    let (read, counts) = match counts {
        Ok(counts) => (1, counts),
        // The store logged the cause where it was born.
        Err(_) => (0, JobCounts::default()),
    };
    out.push_str(
        "# HELP tender_jobs_outbox Jobs recorded and not yet handed to the job runner, by job.\n\
         # TYPE tender_jobs_outbox gauge\n",
    );
    for (job, n) in &counts.outbox {
        let _ = writeln!(out, "tender_jobs_outbox{{job=\"{}\"}} {n}", escape(job));
    }
    let mut queues: BTreeMap<&str, BTreeMap<&'static str, i64>> = BTreeMap::new();
    for (queue, status, n) in &counts.tasks {
        let label = TASK_STATUSES
            .iter()
            .find(|(name, _)| name == status)
            .map_or("other", |(_, label)| label);
        let statuses = queues
            .entry(queue)
            .or_insert_with(|| TASK_STATUSES.iter().map(|(_, label)| (*label, 0)).collect());
        *statuses.entry(label).or_default() += n;
    }
    out.push_str(
        "# HELP tender_jobs The job runner's tasks not done, by queue and status: the queue's \
         depth (pending, queued), its work in hand (running) and its failures (failed, with \
         retries left or not; killed).\n\
         # TYPE tender_jobs gauge\n",
    );
    for (queue, statuses) in &queues {
        for (status, n) in statuses {
            let _ = writeln!(
                out,
                "tender_jobs{{queue=\"{}\",status=\"{status}\"}} {n}",
                escape(queue)
            );
        }
    }
    let _ = write!(
        out,
        "# HELP tender_jobs_read_ok 1 when the job gauges were read at this scrape, 0 when the \
         database did not answer.\n\
         # TYPE tender_jobs_read_ok gauge\n\
         tender_jobs_read_ok {read}\n"
    );
}

/// A label value as the text format needs it: backslash, double quote and newline escaped.
fn escape(value: &str) -> std::borrow::Cow<'_, str> {
    if value.contains(['\\', '"', '\n']) {
        value
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
            .into()
    } else {
        value.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// The value of the one line of `text` that starts with `series `.
    fn value<'a>(text: &'a str, series: &str) -> &'a str {
        let lines: Vec<&str> = text
            .lines()
            .filter_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .collect();
        assert_eq!(lines.len(), 1, "one {series} in\n{text}");
        lines[0]
    }

    #[test]
    fn a_histogram_renders_cumulative_buckets_up_to_inf_with_its_sum_and_count() {
        let mut histogram = Histogram::default();
        // Bounds are inclusive (`le`): 1 ms is in the first bucket, 1.001 ms in the second.
        for elapsed in [
            Duration::ZERO,
            ms(1),
            Duration::from_micros(1_001),
            ms(300),
            ms(10_000),
            ms(20_000),
        ] {
            histogram.observe(elapsed);
        }
        let mut out = String::new();
        histogram.render(&mut out, "t", "route=\"/x\"");
        let expected = "\
t_bucket{route=\"/x\",le=\"0.001\"} 2
t_bucket{route=\"/x\",le=\"0.0025\"} 3
t_bucket{route=\"/x\",le=\"0.005\"} 3
t_bucket{route=\"/x\",le=\"0.01\"} 3
t_bucket{route=\"/x\",le=\"0.025\"} 3
t_bucket{route=\"/x\",le=\"0.05\"} 3
t_bucket{route=\"/x\",le=\"0.1\"} 3
t_bucket{route=\"/x\",le=\"0.25\"} 3
t_bucket{route=\"/x\",le=\"0.5\"} 4
t_bucket{route=\"/x\",le=\"1\"} 4
t_bucket{route=\"/x\",le=\"2.5\"} 4
t_bucket{route=\"/x\",le=\"5\"} 4
t_bucket{route=\"/x\",le=\"10\"} 5
t_bucket{route=\"/x\",le=\"+Inf\"} 6
t_sum{route=\"/x\"} 30.302001
t_count{route=\"/x\"} 6
";
        assert_eq!(out, expected);
    }

    #[test]
    fn an_empty_histogram_renders_zeros() {
        let mut out = String::new();
        Histogram::default().render(&mut out, "t", "a=\"b\"");
        assert_eq!(out.lines().count(), LATENCY_BUCKETS_MICROS.len() + 3);
        assert!(out.contains("t_bucket{a=\"b\",le=\"+Inf\"} 0\n"), "{out}");
        assert!(
            out.ends_with("t_sum{a=\"b\"} 0\nt_count{a=\"b\"} 0\n"),
            "{out}"
        );
    }

    #[test]
    fn http_requests_are_counted_by_route_status_and_error_code() {
        let metrics = Metrics::default();
        let request = |status, error, elapsed| HttpRequest {
            method: "GET",
            route: "/v1/accounts/{id}",
            status,
            error,
            elapsed,
        };
        metrics.http_request(request(200, None, ms(2)));
        metrics.http_request(request(200, None, ms(30)));
        metrics.http_request(request(404, Some("ledger.not_found"), ms(3)));
        metrics.http_request(HttpRequest {
            method: "POST",
            route: UNMATCHED_ROUTE,
            status: 404,
            error: Some("api.not_found"),
            elapsed: ms(0),
        });
        let text = metrics.render();
        let get = "method=\"GET\",route=\"/v1/accounts/{id}\"";
        assert_eq!(
            value(
                &text,
                &format!("tender_http_requests_total{{{get},status=\"200\"}}")
            ),
            "2"
        );
        assert_eq!(
            value(
                &text,
                &format!("tender_http_requests_total{{{get},status=\"404\"}}")
            ),
            "1"
        );
        assert_eq!(
            value(
                &text,
                "tender_http_requests_total{method=\"POST\",route=\"unmatched\",status=\"404\"}"
            ),
            "1"
        );
        assert_eq!(
            value(&text, "tender_http_errors_total{code=\"ledger.not_found\"}"),
            "1"
        );
        assert_eq!(
            value(&text, "tender_http_errors_total{code=\"api.not_found\"}"),
            "1"
        );
        let name = "tender_http_request_duration_seconds";
        assert_eq!(value(&text, &format!("{name}_count{{{get}}}")), "3");
        assert_eq!(
            value(&text, &format!("{name}_bucket{{{get},le=\"0.0025\"}}")),
            "1"
        );
        assert_eq!(
            value(&text, &format!("{name}_bucket{{{get},le=\"0.005\"}}")),
            "2"
        );
        assert_eq!(
            value(&text, &format!("{name}_bucket{{{get},le=\"+Inf\"}}")),
            "3"
        );
        assert_eq!(value(&text, &format!("{name}_sum{{{get}}}")), "0.035");
        assert!(text.contains("# TYPE tender_http_request_duration_seconds histogram\n"));
    }

    #[test]
    fn job_gauges_show_every_status_of_a_queue_with_work_and_say_when_unread() {
        let counts = JobCounts {
            outbox: vec![("generate-batch".into(), 2)],
            tasks: vec![
                ("q".into(), "Failed".into(), 1),
                ("q".into(), "Pending".into(), 3),
                ("q".into(), "Surprise".into(), 4),
            ],
        };
        let mut text = String::new();
        render_jobs(&mut text, Ok(counts));
        assert_eq!(
            value(&text, "tender_jobs_outbox{job=\"generate-batch\"}"),
            "2"
        );
        for (status, n) in [
            ("pending", "3"),
            ("queued", "0"),
            ("running", "0"),
            ("failed", "1"),
            ("killed", "0"),
            ("other", "4"),
        ] {
            let series = format!("tender_jobs{{queue=\"q\",status=\"{status}\"}}");
            assert_eq!(value(&text, &series), n);
        }
        assert_eq!(value(&text, "tender_jobs_read_ok"), "1");

        let mut unread = String::new();
        render_jobs(&mut unread, Err(crate::store::StoreError::SchemaBehind));
        assert_eq!(value(&unread, "tender_jobs_read_ok"), "0");
        assert!(!unread.contains("tender_jobs{"), "{unread}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("/v1/x"), "/v1/x");
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
