//! What every request leaves behind: a tracing span named by the request's id, so every log
//! line written while it is served carries that id; one line at info once it is answered
//! (method, route template, status, duration); and its count, error code and latency in the
//! metrics.
//!
//! Only fixed values are recorded: the method from a fixed list, the route's template (never
//! the path as sent, which holds ids; never a query string, where a client might put a code),
//! the status and the error's stable code. No header and no body is ever logged, so no key and
//! no code reach the log or the metrics, and no client can add a metric series.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use super::RequestId;
use super::error::ApiError;
use crate::app::App;
use crate::service::metrics::{HttpRequest, UNMATCHED_ROUTE};
use crate::store::Store;

/// The error code counted for an error response that carries no [`ApiError`] (none is known
/// to; a gap in the mapping would show here rather than go uncounted).
pub const UNCLASSIFIED: &str = "api.unclassified";

/// What the middleware needs: the app, whose metrics it counts into, and the route templates
/// the router serves, so a route label is always one of them.
#[derive(Clone)]
pub(super) struct Observer<S> {
    /// The app.
    pub(super) app: App<S>,
    /// Every route template, once each.
    pub(super) routes: Arc<[&'static str]>,
}

/// The method's label: one of the methods HTTP defines, or `other`, since a client may send
/// any token as a method.
fn method_label(method: &Method) -> &'static str {
    const KNOWN: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::DELETE, "DELETE"),
        (Method::PATCH, "PATCH"),
        (Method::HEAD, "HEAD"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::TRACE, "TRACE"),
        (Method::CONNECT, "CONNECT"),
    ];
    KNOWN
        .iter()
        .find(|(known, _)| known == method)
        .map_or("other", |(_, label)| label)
}

/// Serves the request inside its span, then logs, counts and times its answer. Runs inside
/// the request-id middleware (which names the request) and outside the timeout, so a request
/// that ran out of time is counted with its 503.
pub(super) async fn observe<S: Store>(
    State(observer): State<Observer<S>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .and_then(|matched| {
            observer
                .routes
                .iter()
                .find(|route| **route == matched.as_str())
        })
        .copied()
        .unwrap_or(UNMATCHED_ROUTE);
    let id = request
        .extensions()
        .get::<RequestId>()
        .map_or("", |id| id.as_str())
        .to_string();
    let span = tracing::info_span!("request", request_id = %id, method = %method, route = %route);
    let response = next.run(request).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = response.status();
    let page = response.extensions().get::<crate::web::PageRefusal>();
    let error = match (response.extensions().get::<ApiError>(), page) {
        (Some(error), _) => Some(error.code()),
        (None, Some(refusal)) => Some(refusal.0),
        (None, None) if status.is_client_error() || status.is_server_error() => Some(UNCLASSIFIED),
        (None, None) => None,
    };
    observer.app.services().metrics().http_request(HttpRequest {
        method,
        route,
        status: status.as_u16(),
        error,
        elapsed,
    });
    // A timing for the log, never money: microseconds as milliseconds, three decimals.
    let duration_ms = elapsed.as_micros() as f64 / 1e3;
    span.in_scope(|| match error {
        Some(code) => tracing::info!(
            status = status.as_u16(),
            code,
            duration_ms,
            "request answered"
        ),
        None => tracing::info!(status = status.as_u16(), duration_ms, "request answered"),
    });
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_methods_http_defines_become_labels() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::DELETE), "DELETE");
        let invented = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&invented), "other");
    }
}
