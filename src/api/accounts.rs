//! The account routes: open an account, read it, its balance and its history; spend, refund and
//! adjust it (with four-eyes approval above the threshold); and the support desk's view of its
//! refused redemption attempts. Each handler is the CLI's service call over HTTP: the order id
//! and the refund id stay the spend's and the refund's idempotency keys.
//!
//! Accounts belong to the issuer, not to a client: any redeem, support or finance key may read
//! any account, and each route allows only the roles that do its work (see the README's
//! table). Point-of-sale, warehouse and admin keys get 403 on every account route.

use axum::Json;
use axum::extract::State;
use axum::http::header::CACHE_CONTROL;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::error::ApiError;
use super::json::Body;
use super::params::{Id, PAGE_LIMIT_MAX, Page};
use crate::app::App;
use crate::domain::{
    Account, AccountId, Actor, HistoryLine, Money, PageRows, TransferId, TransferKind,
};
use crate::service::ledger::{AccountForm, AdjustForm, Adjusted, Posted, RefundForm, SpendForm};
use crate::store::Store;
use crate::store::redeem::AttemptRow;

/// The caller as the audit trail records it: `api:NAME`.
fn actor(caller: &Caller) -> Actor {
    Actor::api(&caller.0.name)
}

/// A new account's body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenAccountBody {
    /// The storefront country, ISO 3166-1 alpha-2: only cards sold for it redeem here.
    #[schema(example = "US", pattern = "^[A-Z]{2}$")]
    region: String,
    /// The account's one currency, ISO 4217.
    #[schema(example = "USD", pattern = "^[A-Z]{3}$")]
    currency: String,
    /// The store's own customer reference: 1 to 64 of `A-Z a-z 0-9 . _ : -`, unique.
    #[schema(example = "C-1042", pattern = r"^[A-Za-z0-9._:-]{1,64}$")]
    external_id: Option<String>,
}

/// A spend's body. The order id is the spend's idempotency key, forever: the same order with
/// the same fields answers the first spend; with other fields it is refused.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpendBody {
    /// The spending service's order id: 1 to 64 of `A-Z a-z 0-9 . _ : -`.
    #[schema(example = "A-77", pattern = r"^[A-Za-z0-9._:-]{1,64}$")]
    order: String,
    /// The spending service: 1 to 32 of `a-z 0-9 - _`.
    #[schema(example = "app-store", pattern = r"^[a-z0-9_-]{1,32}$")]
    service: String,
    /// A positive decimal string, such as "10.00"; never a JSON number.
    #[schema(example = "10.00", pattern = r"^[0-9]+(\.[0-9]+)?$", max_length = 32)]
    amount: String,
    /// ISO 4217: the account's currency.
    #[schema(example = "USD", pattern = "^[A-Z]{3}$")]
    currency: String,
    /// When the order was placed (RFC 3339); now when not given.
    #[schema(value_type = Option<String>, format = DateTime)]
    effective_at: Option<DateTime<Utc>>,
}

/// A refund's body. The refund id is its idempotency key; all refunds of an order together
/// never exceed what it spent.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundBody {
    /// The order refunded, as its spend named it.
    #[schema(example = "A-77", pattern = r"^[A-Za-z0-9._:-]{1,64}$")]
    order: String,
    /// The refund's own id: 1 to 64 of `A-Z a-z 0-9 . _ : -`.
    #[schema(example = "R-1", pattern = r"^[A-Za-z0-9._:-]{1,64}$")]
    refund: String,
    /// A positive decimal string, such as "5.00"; never a JSON number.
    #[schema(example = "5.00", pattern = r"^[0-9]+(\.[0-9]+)?$", max_length = 32)]
    amount: String,
    /// ISO 4217: the order's currency.
    #[schema(example = "USD", pattern = "^[A-Z]{3}$")]
    currency: String,
    /// When the refund was made (RFC 3339); now when not given.
    #[schema(value_type = Option<String>, format = DateTime)]
    effective_at: Option<DateTime<Utc>>,
}

/// A support adjustment's body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustmentBody {
    /// A signed decimal string: "25.00" credits the account, "-25.00" debits it.
    #[schema(example = "25.00", pattern = r"^-?[0-9]+(\.[0-9]+)?$", max_length = 32)]
    amount: String,
    /// ISO 4217: the account's currency.
    #[schema(example = "USD", pattern = "^[A-Z]{3}$")]
    currency: String,
    /// A reason code: 1 to 32 of `a-z 0-9 - _`.
    #[schema(example = "goodwill", pattern = r"^[a-z0-9_-]{1,32}$")]
    reason: String,
}

/// A customer account.
#[derive(Serialize, ToSchema)]
#[schema(as = Account)]
pub struct AccountView {
    id: AccountId,
    /// The storefront country, ISO 3166-1 alpha-2.
    #[schema(pattern = "^[A-Z]{2}$", example = "US")]
    region: String,
    /// Its one currency, ISO 4217.
    #[schema(pattern = "^[A-Z]{3}$", example = "USD")]
    currency: String,
    /// What it holds.
    balance: Money,
    /// Why it is frozen (a reason code); null when it is not. A frozen account neither
    /// receives nor spends.
    #[schema(required = true)]
    frozen_reason: Option<String>,
    /// The store's customer reference; null when none was given or it was erased.
    #[schema(required = true)]
    external_id: Option<String>,
    /// When its personal data was erased; null while it is not.
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    erased_at: Option<DateTime<Utc>>,
    /// When it was opened.
    #[schema(value_type = String, format = DateTime)]
    created_at: DateTime<Utc>,
}

impl From<Account> for AccountView {
    fn from(account: Account) -> Self {
        AccountView {
            id: account.id,
            region: account.region.to_string(),
            currency: account.currency.to_string(),
            balance: account.balance,
            frozen_reason: account.frozen_reason,
            external_id: account.external_id,
            erased_at: account.erased_at,
            created_at: account.created_at,
        }
    }
}

/// An account's balance.
#[derive(Serialize, ToSchema)]
pub struct Balance {
    account_id: AccountId,
    /// What it holds.
    balance: Money,
    /// Whether it is frozen: then it neither receives nor spends.
    frozen: bool,
}

/// One page of an account's history, newest first.
#[derive(Serialize, ToSchema)]
pub struct HistoryPage {
    /// At most `limit` lines.
    lines: Vec<HistoryLineView>,
    /// The cursor for the next (older) page, as its `after`; null on the last page.
    #[schema(value_type = Option<i64>, minimum = 1, required = true)]
    next: Option<TransferId>,
}

/// One line of an account's history: one transfer that moved its balance.
#[derive(Serialize, ToSchema)]
#[schema(as = HistoryLine)]
pub struct HistoryLineView {
    /// The transfer; also the cursor that pages on from this line.
    transfer_id: TransferId,
    kind: TransferKind,
    /// What it did to the account: positive in, negative out.
    amount: Money,
    /// The balance right after it.
    balance_after: Money,
    /// The caller's reference (order or refund id); null when it has none.
    #[schema(required = true)]
    reference: Option<String>,
    /// When it happened in the world.
    #[schema(value_type = String, format = DateTime)]
    effective_at: DateTime<Utc>,
    /// When tender recorded it.
    #[schema(value_type = String, format = DateTime)]
    recorded_at: DateTime<Utc>,
    /// For a gift card redemption: the card, masked but for its last 4 digits; null otherwise.
    #[schema(required = true)]
    card: Option<String>,
    /// For a purchase or a refund: the service the order was placed at; null otherwise.
    #[schema(required = true)]
    service: Option<String>,
    /// For a purchase or a refund: the order's id; null otherwise.
    #[schema(required = true)]
    order: Option<String>,
}

impl From<HistoryLine> for HistoryLineView {
    fn from(line: HistoryLine) -> Self {
        HistoryLineView {
            transfer_id: line.transfer_id,
            kind: line.kind,
            amount: line.amount,
            balance_after: line.balance_after,
            reference: line.reference,
            effective_at: line.effective_at,
            recorded_at: line.recorded_at,
            card: line.card.map(|serial| serial.masked()),
            service: line.service,
            order: line.order,
        }
    }
}

/// What a spend or refund did.
#[derive(Serialize, ToSchema)]
#[schema(as = Posted)]
pub struct PostedView {
    transfer_id: TransferId,
    /// The account's balance right after it.
    balance_after: Money,
    /// Whether this answers a repeat of an earlier identical request: nothing new was written.
    replayed: bool,
}

impl From<Posted> for PostedView {
    fn from(posted: Posted) -> Self {
        PostedView {
            transfer_id: posted.transfer_id,
            balance_after: posted.balance_after,
            replayed: posted.replayed,
        }
    }
}

/// Where an adjustment is.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AdjustmentState {
    /// Its transfer is on the ledger.
    Posted,
    /// Above the approval threshold: waiting for a second person.
    Pending,
}

/// A posted adjustment.
#[derive(Serialize, ToSchema)]
pub struct AdjustmentPosted {
    /// The adjustment.
    adjustment_id: i64,
    /// `posted`.
    state: AdjustmentState,
    transfer_id: TransferId,
    /// The account's balance right after it.
    balance_after: Money,
}

/// An adjustment waiting for approval by another key.
#[derive(Serialize, ToSchema)]
pub struct AdjustmentPending {
    /// The adjustment: approve it with `POST /v1/adjustments/{id}/approve`.
    adjustment_id: i64,
    /// `pending`.
    state: AdjustmentState,
}

/// Refused redemption attempts on an account, newest first.
#[derive(Serialize, ToSchema)]
pub struct Attempts {
    /// At most `limit` attempts.
    attempts: Vec<AttemptView>,
}

/// One refused redemption attempt. The code tried is never kept, so never shown.
#[derive(Serialize, ToSchema)]
#[schema(as = Attempt)]
pub struct AttemptView {
    /// The attempt.
    attempt_id: i64,
    account_id: AccountId,
    /// Who asked: `api:NAME` or `cli:USER`.
    caller: String,
    /// The card the code matched; null when it matched none.
    #[schema(value_type = Option<String>, pattern = "^[0-9]{12}$", required = true)]
    serial: Option<String>,
    /// The refusal's stable code, such as `redeem.not_found`.
    outcome: String,
    /// When.
    #[schema(value_type = String, format = DateTime)]
    at: DateTime<Utc>,
}

impl From<AttemptRow> for AttemptView {
    fn from(row: AttemptRow) -> Self {
        AttemptView {
            attempt_id: row.attempt_id,
            account_id: row.account_id,
            caller: row.caller,
            serial: row.serial.map(|s| s.to_string()),
            outcome: row.outcome,
            at: row.at,
        }
    }
}

/// Opens an account with a zero balance: 201 with the account.
#[utoipa::path(
    post,
    path = "/v1/accounts",
    tag = "accounts",
    request_body = OpenAccountBody,
    responses((status = 201, description = "The account was opened", body = AccountView)),
)]
pub async fn open<S: Store>(
    State(app): State<App<S>>,
    caller: Caller,
    Body(body): Body<OpenAccountBody>,
) -> Result<(StatusCode, Json<AccountView>), ApiError> {
    let form = AccountForm {
        region: body.region,
        currency: body.currency,
        external_id: body.external_id,
    };
    let account = app
        .services()
        .ledger()
        .create_account(&form, &actor(&caller))
        .await?;
    Ok((StatusCode::CREATED, Json(account.into())))
}

/// A single-use sign-in link to the account's page on tender, for the store's site to send
/// its signed-in customer to. It opens the account: never log it, never show it to anyone but
/// the account's customer.
#[derive(Serialize, ToSchema)]
#[schema(as = SignInLink)]
pub struct SignInLinkView {
    account_id: AccountId,
    /// The link: tender's public URL, `/account/sign-in` and a token. It works once, and for 5
    /// minutes.
    #[schema(format = "uri")]
    url: String,
    /// When it stops working.
    #[schema(value_type = String, format = DateTime)]
    expires_at: DateTime<Utc>,
}

/// Mints a single-use sign-in link to the account's page: 201 with the link, not to be
/// cached or logged. Audited under the calling key.
#[utoipa::path(
    post,
    path = "/v1/accounts/{id}/sign-in-links",
    tag = "accounts",
    params(("id" = i64, Path, minimum = 1, description = "The account the link signs in to")),
    responses((status = 201, description = "The link was minted", body = SignInLinkView)),
)]
pub async fn sign_in_link<S: Store>(
    State(app): State<App<S>>,
    caller: Caller,
    Id(id): Id,
) -> Result<Response, ApiError> {
    let link = app
        .services()
        .sessions()
        .mint(&id.to_string(), &actor(&caller))
        .await?;
    let view = SignInLinkView {
        account_id: link.account_id,
        url: link.url,
        expires_at: link.expires_at,
    };
    let no_store = [(CACHE_CONTROL, HeaderValue::from_static("no-store"))];
    Ok((StatusCode::CREATED, no_store, Json(view)).into_response())
}

/// An account, with its balance.
#[utoipa::path(
    get,
    path = "/v1/accounts/{id}",
    tag = "accounts",
    params(("id" = i64, Path, minimum = 1, description = "The account")),
    responses((status = 200, description = "The account", body = AccountView)),
)]
pub async fn show<S: Store>(
    State(app): State<App<S>>,
    Id(id): Id,
) -> Result<Json<AccountView>, ApiError> {
    let account = app.services().ledger().account(&id.to_string()).await?;
    Ok(Json(account.into()))
}

/// An account's balance.
#[utoipa::path(
    get,
    path = "/v1/accounts/{id}/balance",
    tag = "accounts",
    params(("id" = i64, Path, minimum = 1, description = "The account")),
    responses((status = 200, description = "The balance", body = Balance)),
)]
pub async fn balance<S: Store>(
    State(app): State<App<S>>,
    Id(id): Id,
) -> Result<Json<Balance>, ApiError> {
    let account = app.services().ledger().account(&id.to_string()).await?;
    Ok(Json(Balance {
        account_id: account.id,
        balance: account.balance,
        frozen: account.frozen_reason.is_some(),
    }))
}

/// An account's history, newest first, a page at a time: pass a page's `next` as `after` for
/// the next one.
#[utoipa::path(
    get,
    path = "/v1/accounts/{id}/history",
    tag = "accounts",
    params(
        ("id" = i64, Path, minimum = 1, description = "The account"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100,
            description = "Lines per page: 1 to 100, default 20"),
        ("after" = Option<i64>, Query, minimum = 1,
            description = "The `next` cursor of the previous page"),
    ),
    responses((status = 200, description = "One page of the history", body = HistoryPage)),
)]
pub async fn history<S: Store>(
    State(app): State<App<S>>,
    Id(id): Id,
    page: Page,
) -> Result<Json<HistoryPage>, ApiError> {
    // One line more than the page shows: whether it exists says whether there is a next page.
    let rows = PageRows::new(u64::from(page.limit) + 1)?;
    let mut lines = app
        .services()
        .ledger()
        .history(&id.to_string(), page.after.map(TransferId), rows)
        .await?;
    let more = lines.len() > page.limit as usize;
    lines.truncate(page.limit as usize);
    let next = more
        .then(|| lines.last().map(|line| line.transfer_id))
        .flatten();
    Ok(Json(HistoryPage {
        lines: lines.into_iter().map(HistoryLineView::from).collect(),
        next,
    }))
}

/// Debits the account for an order: 201 with the posting; 200 with the first posting when the
/// same order comes again with the same fields.
#[utoipa::path(
    post,
    path = "/v1/accounts/{id}/spends",
    tag = "accounts",
    params(
        ("id" = i64, Path, minimum = 1, description = "The account debited"),
    ),
    request_body = SpendBody,
    responses(
        (status = 201, description = "Spent", body = PostedView),
        (status = 200, description = "A repeat of the order: the first spend, nothing new written", body = PostedView),
    ),
)]
pub async fn spend<S: Store>(
    State(app): State<App<S>>,
    caller: Caller,
    Id(id): Id,
    Body(body): Body<SpendBody>,
) -> Result<(StatusCode, Json<PostedView>), ApiError> {
    let form = SpendForm {
        account: id.to_string(),
        amount: body.amount,
        currency: body.currency,
        order: body.order,
        service: body.service,
        effective_at: body.effective_at,
    };
    let posted = app
        .services()
        .ledger()
        .spend(&form, &actor(&caller))
        .await?;
    Ok(posted_reply(posted))
}

/// Credits back part or all of an order: 201 with the posting; 200 with the first posting when
/// the same refund id comes again with the same fields.
#[utoipa::path(
    post,
    path = "/v1/accounts/{id}/refunds",
    tag = "accounts",
    params(
        ("id" = i64, Path, minimum = 1, description = "The account credited"),
    ),
    request_body = RefundBody,
    responses(
        (status = 201, description = "Refunded", body = PostedView),
        (status = 200, description = "A repeat of the refund: the first one, nothing new written", body = PostedView),
    ),
)]
pub async fn refund<S: Store>(
    State(app): State<App<S>>,
    caller: Caller,
    Id(id): Id,
    Body(body): Body<RefundBody>,
) -> Result<(StatusCode, Json<PostedView>), ApiError> {
    let form = RefundForm {
        account: id.to_string(),
        order: body.order,
        refund: body.refund,
        amount: body.amount,
        currency: body.currency,
        effective_at: body.effective_at,
    };
    let posted = app
        .services()
        .ledger()
        .refund(&form, &actor(&caller))
        .await?;
    Ok(posted_reply(posted))
}

/// 201 for a new posting, 200 for a replay of the first.
fn posted_reply(posted: Posted) -> (StatusCode, Json<PostedView>) {
    let status = if posted.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    (status, Json(posted.into()))
}

/// Credits or debits the account against `adjustment`. At or under the approval threshold
/// (`--approval-over`) it posts at once (201); above it, it waits for another key's approval
/// (202).
#[utoipa::path(
    post,
    path = "/v1/accounts/{id}/adjustments",
    tag = "accounts",
    params(
        ("id" = i64, Path, minimum = 1, description = "The account adjusted"),
    ),
    request_body = AdjustmentBody,
    responses(
        (status = 201, description = "Posted at once", body = AdjustmentPosted),
        (status = 202, description = "Above the approval threshold: waiting for another key's approval", body = AdjustmentPending),
    ),
)]
pub async fn adjust<S: Store>(
    State(app): State<App<S>>,
    caller: Caller,
    Id(id): Id,
    Body(body): Body<AdjustmentBody>,
) -> Result<Response, ApiError> {
    let form = AdjustForm {
        account: id.to_string(),
        amount: body.amount,
        currency: body.currency,
        reason: body.reason,
    };
    let adjusted = app
        .services()
        .ledger()
        .adjust(&form, &actor(&caller))
        .await?;
    Ok(match adjusted {
        Adjusted::Posted {
            adjustment_id,
            posted,
        } => (
            StatusCode::CREATED,
            Json(AdjustmentPosted {
                adjustment_id,
                state: AdjustmentState::Posted,
                transfer_id: posted.transfer_id,
                balance_after: posted.balance_after,
            }),
        )
            .into_response(),
        Adjusted::Pending { adjustment_id } => (
            StatusCode::ACCEPTED,
            Json(AdjustmentPending {
                adjustment_id,
                state: AdjustmentState::Pending,
            }),
        )
            .into_response(),
    })
}

/// Approves and posts a pending adjustment. The approving key must not be the requesting one
/// (`409 adjustment.self_approval`); a decided adjustment is `409 adjustment.not_pending`.
#[utoipa::path(
    post,
    path = "/v1/adjustments/{id}/approve",
    tag = "accounts",
    params(
        ("id" = i64, Path, minimum = 1, description = "The pending adjustment"),
    ),
    responses((status = 200, description = "Approved and posted", body = AdjustmentPosted)),
)]
pub async fn approve<S: Store>(
    State(app): State<App<S>>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<AdjustmentPosted>, ApiError> {
    let posted = app.services().ledger().approve(id, &actor(&caller)).await?;
    Ok(Json(AdjustmentPosted {
        adjustment_id: id,
        state: AdjustmentState::Posted,
        transfer_id: posted.transfer_id,
        balance_after: posted.balance_after,
    }))
}

/// The account's refused redemption attempts, newest first, at most `limit` (support keys).
#[utoipa::path(
    get,
    path = "/v1/accounts/{id}/attempts",
    tag = "accounts",
    params(
        ("id" = i64, Path, minimum = 1, description = "The account"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100,
            description = "Attempts at most: 1 to 100, default 20"),
    ),
    responses((status = 200, description = "The newest refused attempts", body = Attempts)),
)]
pub async fn attempts<S: Store>(
    State(app): State<App<S>>,
    Id(id): Id,
    page: Page,
) -> Result<Json<Attempts>, ApiError> {
    if page.after.is_some() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "api.bad_query",
            format!("the attempt log takes only `limit` (1 to {PAGE_LIMIT_MAX})"),
        ));
    }
    let account = id.to_string();
    // An account that does not exist is 404, not an empty log.
    app.services().ledger().account(&account).await?;
    let rows = PageRows::new(u64::from(page.limit))?;
    let rows = app
        .services()
        .redemption()
        .attempts(Some(&account), None, rows)
        .await?;
    Ok(Json(Attempts {
        attempts: rows.into_iter().map(AttemptView::from).collect(),
    }))
}
