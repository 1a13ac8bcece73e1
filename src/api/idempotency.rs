//! The idempotency layer of every value-moving route ([`super::Routes::post_moving`]): an
//! `Idempotency-Key` header is required, and a retry under the same key from the same client
//! gets the first answer, with its status, marked `Idempotent-Replayed: true`. The rules (which
//! answers are kept, when a claim in flight is taken over) are the idempotency service's, see
//! [`crate::service::idempotency`].
//!
//! In order, before the handler runs: the caller is authenticated and its role checked, by the
//! key check in front of the route (401 or 403 before anything is stored), the header is checked (400
//! `api.idempotency_key_required` or `api.idempotency_key_invalid`), the body is read within
//! [`JSON_BODY_MAX_BYTES`](super::json::JSON_BODY_MAX_BYTES) (413), and the key is claimed
//! (422 `idempotency.key_reused`, 409 `idempotency.in_flight`, or the stored answer). Then the
//! handler runs on the same bytes, and its answer is stored or the claim released.

use axum::body::{Body as HttpBody, Bytes, to_bytes};
use axum::extract::{FromRequest, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::auth;
use super::error::ApiError;
use super::json::too_large;
use super::{REQUEST_TIMEOUT, RequestId};
use crate::app::App;
use crate::service::idempotency::{Claimed, IdemRequest, Ticket, keeps, parse_key};
use crate::store::Store;
use crate::store::idempotency::StoredAnswer;

/// The header carrying a value-moving request's idempotency key.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The header marking an answer as a replay of the first one, as Stripe names it.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The largest answer stored for replay: a value-moving route answers a few hundred bytes, so
/// anything near this is a bug, refused rather than stored.
pub const ANSWER_MAX_BYTES: usize = 64 * 1024;

/// The middleware: see the module's documentation.
pub async fn idempotent<S: Store>(
    State(app): State<App<S>>,
    request: Request,
    next: Next,
) -> Response {
    match run(&app, request, next).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn run<S: Store>(app: &App<S>, request: Request, next: Next) -> Result<Response, ApiError> {
    let (mut parts, body) = request.into_parts();
    // The key check in front of the route left the caller; alone, this layer checks it itself.
    let caller = match parts.extensions.get::<auth::Caller>() {
        Some(caller) => caller.clone(),
        None => {
            let caller = auth::authenticate(&parts.headers, app).await?;
            parts.extensions.insert(caller.clone());
            caller
        }
    };
    let key = match parts.headers.get(IDEMPOTENCY_KEY) {
        None => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "api.idempotency_key_required",
                "a value-moving request needs an Idempotency-Key header",
            ));
        }
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|text| parse_key(text).ok())
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "api.idempotency_key_invalid",
                    format!(
                        "an Idempotency-Key is 1 to {} printable ASCII characters without spaces",
                        crate::service::idempotency::IDEMPOTENCY_KEY_MAX_CHARS
                    ),
                )
            })?
            .to_string(),
    };
    // Read through the extractor, so the route's body limit applies as it does to `Body`.
    let limit = super::json::limit_of(&parts.extensions);
    let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), &())
        .await
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large(limit)
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "api.bad_body",
                    "the body could not be read",
                )
            }
        })?;
    let path = parts
        .uri
        .path_and_query()
        .map_or(parts.uri.path(), |p| p.as_str());
    let idem = IdemRequest {
        client_key_id: &caller.0.key_id,
        idem_key: &key,
        method: parts.method.as_str(),
        path,
        body: &bytes,
    };
    let service = app.services().idempotency();
    let ticket = match service.claim(&idem, REQUEST_TIMEOUT).await? {
        Claimed::Replay(answer) => {
            let request_id = parts.extensions.get::<RequestId>();
            return Ok(replay(answer, request_id));
        }
        Claimed::Run(ticket) => ticket,
    };
    let response = next
        .run(Request::from_parts(parts, HttpBody::from(bytes)))
        .await;
    Ok(settle(app, &ticket, response).await)
}

/// Stores `response` for replay when the rules keep it, otherwise releases the claim; returns
/// the response as it was. A failure to store or release is logged, not answered: the
/// operation's own outcome stands, and the claim goes stale within the request timeout.
async fn settle<S: Store>(app: &App<S>, ticket: &Ticket, response: Response) -> Response {
    let service = app.services().idempotency();
    let status = response.status();
    let (parts, body) = response.into_parts();
    let bytes = match to_bytes(body, ANSWER_MAX_BYTES).await {
        Ok(bytes) => bytes,
        Err(_) => {
            tracing::error!(status = status.as_u16(), "an answer too large to store");
            if let Err(error) = service.release(ticket).await {
                tracing::warn!(%error, "an idempotency claim could not be released");
            }
            return ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "api.internal",
                "the answer could not be produced; the log has the cause",
            )
            .into_response();
        }
    };
    let stored = keeps(status.as_u16())
        .then(|| match parts.extensions.get::<ApiError>() {
            // An error's body is rendered later, with the request's id; what is kept is its
            // code and sentence, and a replay renders them with its own id.
            Some(error) => Some(
                json!({ "error": { "code": error.code(), "message": error.message() } })
                    .to_string(),
            ),
            None => String::from_utf8(bytes.to_vec()).ok(),
        })
        .flatten();
    let outcome = match stored {
        Some(body) => {
            let answer = StoredAnswer {
                status: status.as_u16(),
                body,
            };
            service.complete(ticket, &answer).await
        }
        None => service.release(ticket).await,
    };
    match outcome {
        Ok(true) => {}
        Ok(false) => tracing::warn!("an idempotency claim was taken over before its request ended"),
        Err(error) => tracing::warn!(%error, "an idempotency claim could not be settled"),
    }
    Response::from_parts(parts, HttpBody::from(bytes))
}

/// A stored answer, as it was first sent, marked as a replay. A stored error gets this
/// request's id, as every error body carries its own request's.
fn replay(answer: StoredAnswer, request_id: Option<&RequestId>) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let mut body = answer.body;
    if let Ok(mut value) = serde_json::from_str::<serde_json::Value>(&body)
        && let Some(error) = value.get_mut("error").and_then(|e| e.as_object_mut())
    {
        let id = request_id.map_or(String::new(), |id| id.as_str().to_string());
        error.insert("request_id".into(), serde_json::Value::String(id));
        body = value.to_string();
    }
    (
        status,
        [
            (CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (IDEMPOTENT_REPLAYED, HeaderValue::from_static("true")),
        ],
        body,
    )
        .into_response()
}
