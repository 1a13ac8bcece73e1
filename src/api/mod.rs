//! The HTTP API: [`router`] builds the routes over an [`App`], [`serve`] runs them on a
//! listener until a shutdown future resolves. Handlers are thin over the services, and
//! [`error::ApiError`] maps every classified error to a status in one place.
//!
//! Only the health check is served yet; the resources arrive with the API's own issue.

pub mod error;

use std::future::Future;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::app::App;
use crate::store::Store;
use error::ApiError;

/// Every route, over `app`.
pub fn router<S: Store>(app: App<S>) -> Router {
    Router::new()
        .route("/v1/health", get(health::<S>))
        .with_state(app)
}

/// Serves `router(app)` on `listener` until `shutdown` resolves; requests in flight finish.
pub async fn serve<S: Store>(
    listener: TcpListener,
    app: App<S>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown)
        .await
}

/// `GET /v1/health`: 200 when the database answers.
async fn health<S: Store>(State(app): State<App<S>>) -> Result<Json<Value>, ApiError> {
    app.store().read().await?;
    Ok(Json(json!({ "status": "ok" })))
}
