//! `POST /v1/accounts/{id}/redemptions` (redeem keys): a code's whole value into the account,
//! through the same service `tender redeem` uses. The code travels only in the body; the
//! `Idempotency-Key` header is the redemption's idempotency key, scoped to the calling key, and
//! the calling key is the caller whose guessing limits count.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::Deserialize;
use zeroize::Zeroize;

use super::auth::Caller;
use super::error::ApiError;
use crate::app::App;
use crate::domain::{Actor, ApiRole};
use crate::service::redemption::{RedeemError, Redeemed};
use crate::store::Store;

/// The largest body a JSON route reads: a few fields, never more than a few hundred bytes.
pub const JSON_BODY_MAX_BYTES: usize = 16 * 1024;

/// The header carrying a value-moving request's idempotency key.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// A redemption's body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedeemBody {
    /// The 16-digit code, with or without its grouping.
    code: String,
}

impl Drop for RedeemBody {
    fn drop(&mut self) {
        // The code is wiped as the request ends, not left in freed memory.
        self.code.zeroize();
    }
}

/// Redeems the body's code into the account: 201 with the redemption; 200 with the first
/// answer when it is a retry.
pub async fn redeem<S: Store>(
    State(app): State<App<S>>,
    caller: Caller,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Result<Json<RedeemBody>, JsonRejection>,
) -> Result<(StatusCode, Json<Redeemed>), ApiError> {
    let caller = caller.allowed(&[ApiRole::Redeem])?;
    let key = headers
        .get(IDEMPOTENCY_KEY)
        .and_then(|value| value.to_str().ok())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "api.idempotency_key_required",
                "a value-moving request needs an Idempotency-Key header",
            )
        })?;
    // The rejection's own text may quote the body, and the body holds a code: never echoed.
    let Json(body) = body.map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "api.bad_body",
            r#"the body must be JSON of the form {"code": "16 digits"}, and nothing else"#,
        )
    })?;
    let actor = Actor::api(&caller.0.name);
    let redeemed = app
        .services()
        .redemption()
        .redeem(&account, &body.code, Some(key), &actor)
        .await
        .map_err(answer)?;
    let status = if redeemed.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(redeemed)))
}

/// A refusal as HTTP: a full window is 429 with `Retry-After`; the rest as their kind says.
fn answer(error: RedeemError) -> ApiError {
    match &error {
        RedeemError::RateLimited {
            retry_after_secs, ..
        } => {
            let seconds = HeaderValue::from(retry_after_secs.unsigned_abs());
            ApiError::from(error)
                .with_status(StatusCode::TOO_MANY_REQUESTS)
                .with_header(RETRY_AFTER, seconds)
        }
        _ => ApiError::from(error),
    }
}
