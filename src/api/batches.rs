//! `POST /v1/batches` (admin keys) requests a batch of cards, through the same service
//! `tender batch create` uses; generation runs as a job, so the answer is 202 with the batch as
//! requested. `GET /v1/batches/{id}` shows one batch and its progress: a point-of-sale key sees
//! only its own retailer's batches, and another's answers 404 as if it did not exist.

use axum::Json;
use axum::extract::State;
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::error::ApiError;
use super::json::{self, Body};
use super::params::Id;
use crate::app::App;
use crate::domain::{Actor, ApiRole, Batch, BatchState, CardValue, Money, RetailerId, Serial};
use crate::service::batches::BatchForm;
use crate::store::Store;

/// A batch request's body: either `value`, or both `min` and `max`, as decimal strings in
/// `currency`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    /// The retailer's name, as added with `tender retailer add`.
    #[schema(example = "Acme", min_length = 1, max_length = 100)]
    retailer: String,
    /// How many cards: 1 to 10,000,000 (`MAX_CARDS_PER_BATCH`).
    #[schema(example = 1000, minimum = 1, maximum = 10_000_000)]
    #[serde(deserialize_with = "json::whole")]
    count: u64,
    /// ISO 4217, such as USD.
    #[schema(example = "USD", pattern = "^[A-Z]{3}$")]
    currency: String,
    /// Every card's fixed value, a decimal string such as "25.00"; or give `min` and `max`.
    #[serde(default)]
    #[schema(example = "25.00", pattern = r"^[0-9]{1,15}(\.[0-9]{1,4})?$")]
    value: Option<String>,
    /// The lowest value of a variable-value batch, chosen at activation.
    #[serde(default)]
    #[schema(pattern = r"^[0-9]{1,15}(\.[0-9]{1,4})?$")]
    min: Option<String>,
    /// The highest value of a variable-value batch.
    #[serde(default)]
    #[schema(pattern = r"^[0-9]{1,15}(\.[0-9]{1,4})?$")]
    max: Option<String>,
    /// The storefront country the cards are redeemed in, ISO 3166-1 alpha-2.
    #[schema(example = "US", pattern = "^[A-Z]{2}$")]
    region: String,
    /// Days until the cards expire: 1 to 3,650 (`MAX_EXPIRY_DAYS`); absent or null for never.
    #[serde(default, deserialize_with = "json::whole_or_null")]
    #[schema(minimum = 1, maximum = 3650)]
    expires_in_days: Option<u32>,
}

/// What every card of a batch is worth: one fixed value, or a range chosen at activation.
#[derive(Serialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BatchValue {
    /// Every card carries this value.
    Fixed {
        /// The value.
        value: Money,
    },
    /// The value is chosen at activation, within this range.
    Variable {
        /// The lowest value.
        min: Money,
        /// The highest value.
        max: Money,
    },
}

impl From<CardValue> for BatchValue {
    fn from(value: CardValue) -> BatchValue {
        match value {
            CardValue::Fixed { value } => BatchValue::Fixed { value },
            CardValue::Variable { min, max } => BatchValue::Variable { min, max },
        }
    }
}

/// A batch of cards and its progress.
#[derive(Serialize, ToSchema)]
pub struct BatchReply {
    /// The batch's id.
    #[schema(minimum = 1)]
    id: i64,
    /// The retailer the cards are for.
    #[schema(minimum = 1)]
    retailer_id: i64,
    /// How many cards.
    #[schema(minimum = 1)]
    count: u64,
    /// What each card is worth.
    value: BatchValue,
    /// The storefront country, ISO 3166-1 alpha-2.
    #[schema(pattern = "^[A-Z]{2}$")]
    region: String,
    /// When the cards expire; null for never.
    #[schema(value_type = Option<String>, format = DateTime)]
    expires_at: Option<DateTime<Utc>>,
    /// The first card's serial; the batch's serials run on from it.
    first_serial: Serial,
    /// The last card's serial.
    last_serial: Serial,
    /// Where the batch is in its life.
    state: BatchState,
    /// Cards generated and stored so far.
    #[schema(minimum = 0)]
    generated: u64,
    /// When it was requested.
    #[schema(value_type = String, format = DateTime)]
    requested_at: DateTime<Utc>,
    /// When its generation completed; null until then.
    #[schema(value_type = Option<String>, format = DateTime)]
    completed_at: Option<DateTime<Utc>>,
}

impl From<Batch> for BatchReply {
    fn from(batch: Batch) -> BatchReply {
        BatchReply {
            id: batch.id.0,
            retailer_id: batch.retailer_id.0,
            count: batch.count,
            value: batch.value.into(),
            region: batch.region.to_string(),
            expires_at: batch.expires_at,
            first_serial: batch.first_serial,
            last_serial: batch.serial_at(batch.count - 1),
            state: batch.state,
            generated: batch.generated,
            requested_at: batch.requested_at,
            completed_at: batch.completed_at,
        }
    }
}

/// Requests a batch: 202 with the batch, whose cards a job generates; its progress at
/// `GET /v1/batches/{id}` (the `Location` header).
#[utoipa::path(
    post,
    path = "/v1/batches",
    operation_id = "request_batch",
    tag = "batches",
    request_body = BatchBody,
    responses(
        (status = 202, description = "The batch is recorded and its generation queued", body = BatchReply,
            headers(("Location" = String, description = "The batch's own path"))),
    ),
)]
pub async fn request<S: Store>(
    State(app): State<App<S>>,
    caller: Caller,
    body: Body<BatchBody>,
) -> Result<(StatusCode, HeaderMap, Json<BatchReply>), ApiError> {
    let Body(body) = body;
    let form = BatchForm {
        retailer: body.retailer,
        count: body.count,
        value: body.value,
        min: body.min,
        max: body.max,
        currency: body.currency,
        region: body.region,
        expires_in_days: body.expires_in_days,
    };
    let actor = Actor::api(&caller.0.name);
    let batch = app.services().batches().request(&form, &actor).await?;
    let mut headers = HeaderMap::new();
    let location = HeaderValue::from_str(&format!("/v1/batches/{}", batch.id))
        .expect("a path of digits is a valid header value");
    headers.insert(LOCATION, location);
    Ok((StatusCode::ACCEPTED, headers, Json(batch.into())))
}

/// One batch and its progress: 200; a point-of-sale key sees only its own retailer's.
#[utoipa::path(
    get,
    path = "/v1/batches/{id}",
    operation_id = "show_batch",
    tag = "batches",
    params(("id" = i64, Path, minimum = 1, description = "The batch's id")),
    responses((status = 200, description = "The batch", body = BatchReply)),
)]
pub async fn show<S: Store>(
    State(app): State<App<S>>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<BatchReply>, ApiError> {
    let batch = app
        .services()
        .batches()
        .show_for(&id.to_string(), scope(&caller)?)
        .await?;
    Ok(Json(batch.into()))
}

/// The retailer a caller is confined to: a point-of-sale key's own; `None` for the roles that
/// see every retailer's cards and batches.
pub(super) fn scope(caller: &Caller) -> Result<Option<RetailerId>, ApiError> {
    match (caller.0.role, caller.0.retailer_id) {
        (ApiRole::Pos, Some(retailer)) => Ok(Some(retailer)),
        // The database's checks give every point-of-sale key a retailer; should one lack it,
        // it sees nothing rather than everything.
        (ApiRole::Pos, None) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "api.forbidden",
            "this point-of-sale key is bound to no retailer",
        )),
        _ => Ok(None),
    }
}
