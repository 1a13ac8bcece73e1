//! The HTTP API: [`router`] builds the routes over an [`App`], [`serve`] runs them on a
//! listener until a shutdown future resolves, then gives requests in flight [`REQUEST_GRACE`].
//! Handlers are thin over the services, and [`error::ApiError`] maps every classified error to
//! a status in one place.
//!
//! Served so far: the probes, `/metrics` (admin keys, see [`auth`]) and redemption (redeem
//! keys); the other resources arrive with the rest of the API's issue.

pub mod auth;
pub mod error;
pub mod redeem;

use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::app::App;
use crate::domain::ApiRole;
use crate::store::Store;
use error::ApiError;

/// How long requests in flight may take to finish once shutdown begins; then their
/// connections are closed. Under the 30 seconds orchestrators commonly wait after SIGTERM
/// before they kill, so the server still exits on its own and logs what it cut.
pub const REQUEST_GRACE: Duration = Duration::from_secs(20);

/// The response header naming the request, for support to find it in the logs.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Every route, over `app`.
pub fn router<S: Store>(app: App<S>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz::<S>))
        .route("/metrics", get(metrics::<S>))
        .route(
            "/v1/accounts/{id}/redemptions",
            post(redeem::redeem::<S>).layer(DefaultBodyLimit::max(redeem::JSON_BODY_MAX_BYTES)),
        )
        .fallback(not_found)
        .with_state(app)
        .layer(middleware::from_fn(request_id))
}

/// Serves `router(app)` on `listener` until `shutdown` resolves; then it accepts no more
/// connections and requests in flight have [`REQUEST_GRACE`] to finish.
pub async fn serve<S: Store>(
    listener: TcpListener,
    app: App<S>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stopping = Arc::new(Notify::new());
    let signal = {
        let stopping = stopping.clone();
        async move {
            shutdown.await;
            // A stored permit: the grace clock starts even before it is awaited.
            stopping.notify_one();
        }
    };
    let server = axum::serve(listener, router(app))
        .with_graceful_shutdown(signal)
        .into_future();
    let grace_over = async {
        stopping.notified().await;
        tokio::time::sleep(REQUEST_GRACE).await;
    };
    tokio::select! {
        served = server => served,
        () = grace_over => {
            tracing::warn!(
                grace_secs = REQUEST_GRACE.as_secs(),
                "requests still in flight after the grace period were cut"
            );
            Ok(())
        }
    }
}

/// Names every request with a new random id, sent back as `X-Request-Id` and in any error
/// body. The caller's own id is not taken: it would let a client forge log lines.
async fn request_id(request: Request, next: Next) -> Response {
    let id = ulid::Ulid::generate().to_string();
    let mut response = next.run(request).await;
    if let Some(error) = response.extensions_mut().remove::<ApiError>() {
        let status = response.status();
        let headers = std::mem::take(response.headers_mut());
        response = (status, error.render(&id)).into_response();
        // The error's own headers (`WWW-Authenticate`, `Retry-After`) stay; the body's are new.
        for (name, value) in &headers {
            if name != CONTENT_TYPE && name != CONTENT_LENGTH {
                response.headers_mut().insert(name, value.clone());
            }
        }
    }
    let value = HeaderValue::from_str(&id).expect("a ULID is a valid header value");
    response.headers_mut().insert(REQUEST_ID, value);
    response
}

/// `GET /healthz`: 200 while the process serves; it does not touch the database, so an
/// orchestrator does not restart a server whose database is down.
async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 when the database answers and its schema is exactly this tender's;
/// otherwise 503 with the store's stable code (`store.busy`, `store.schema_behind`, …).
async fn readyz<S: Store>(State(app): State<App<S>>) -> Result<Json<Value>, ApiError> {
    app.store()
        .check_schema()
        .await
        .map_err(|e| ApiError::from(e).with_status(StatusCode::SERVICE_UNAVAILABLE))?;
    Ok(Json(json!({ "status": "ready" })))
}

/// `GET /metrics` (admin keys): this process's counters in the Prometheus text format.
async fn metrics<S: Store>(
    State(app): State<App<S>>,
    caller: auth::Caller,
) -> Result<Response, ApiError> {
    caller.allowed(&[ApiRole::Admin])?;
    let body = app.services().metrics().render();
    Ok((
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        body,
    )
        .into_response())
}

/// Any path no route serves.
async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "api.not_found",
        "no such route; see the README for the routes",
    )
}
