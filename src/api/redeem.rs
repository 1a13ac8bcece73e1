//! `POST /v1/accounts/{id}/redemptions` (redeem keys): a code's whole value into the account,
//! through the same service `tender redeem` uses. The code travels only in the body; the
//! `Idempotency-Key` header is the redemption's idempotency key, scoped to the calling key, and
//! the calling key is the caller whose guessing limits count.

use axum::Json;
use axum::extract::State;
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use serde::Deserialize;
use utoipa::ToSchema;
use zeroize::Zeroize;

use super::auth::Caller;
use super::error::ApiError;
use super::json::Body;
use super::params::Id;
use crate::app::App;
use crate::domain::{AccountId, Actor, Money, TransferId};
use crate::service::redemption::{RedeemError, Redeemed};
use crate::store::Store;

pub use super::idempotency::IDEMPOTENCY_KEY;

/// A redemption's body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeemBody {
    /// The 16-digit code from under the scratch-off, with or without spaces or hyphens.
    #[schema(
        example = "1234 5678 9012 3456",
        pattern = "^[0-9]{4}([ -]?[0-9]{4}){3}$"
    )]
    code: String,
}

/// What a redemption did.
#[derive(serde::Serialize, ToSchema)]
#[allow(dead_code)]
#[schema(as = Redemption)]
struct RedeemedSchema {
    /// The card, masked but for its last 4 digits.
    card: String,
    account_id: AccountId,
    /// The card's whole value, credited.
    amount: Money,
    transfer_id: TransferId,
    /// The account's balance right after it.
    balance_after: Money,
    /// Whether this answers a retry: the first success, nothing new written.
    replayed: bool,
}

impl Drop for RedeemBody {
    fn drop(&mut self) {
        // The code is wiped as the request ends, not left in freed memory.
        self.code.zeroize();
    }
}

/// Redeems the body's code into the account: 201 with the redemption. A retry under the same
/// key is answered by the idempotency layer; one that outlived its record (purged after 30
/// days) reaches the service, which finds the first redemption by the same key: 200.
#[utoipa::path(
    post,
    path = "/v1/accounts/{id}/redemptions",
    tag = "accounts",
    params(
        ("id" = i64, Path, minimum = 1, description = "The account credited"),
    ),
    request_body = RedeemBody,
    responses(
        (status = 201, description = "The card's value was credited (a retry under the same key gets this answer again, with Idempotent-Replayed: true)", body = RedeemedSchema,
            headers(("Idempotent-Replayed" = String, description = "`true` on a retry's replay of the first answer"))),
        (status = 200, description = "A retry whose idempotency record was purged (after 30 days or more): the first redemption, found by its own key, nothing new written", body = RedeemedSchema),
        (status = 429, description = "Too many attempts for this account or key; see Retry-After", body = super::doc::ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds until a slot frees"))),
    ),
)]
pub async fn redeem<S: Store>(
    State(app): State<App<S>>,
    caller: Caller,
    Id(account): Id,
    headers: HeaderMap,
    body: Body<RedeemBody>,
) -> Result<(StatusCode, Json<Redeemed>), ApiError> {
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
    let Body(body) = body;
    let actor = Actor::api(&caller.0.name);
    let redeemed = app
        .services()
        .redemption()
        .redeem(&account.to_string(), &body.code, Some(key), &actor)
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
