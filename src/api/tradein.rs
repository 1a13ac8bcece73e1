//! The trade-in routes: warehouses send valuations as JSON rows or as a CSV upload, read an
//! upload's report and rejects; finance and support read valuations; finance approves or
//! rejects the held ones. Each handler is the CLI's service call over HTTP.
//!
//! An upload is accepted once by its bytes (their SHA-256), so it takes no `Idempotency-Key`:
//! sending the same file again answers with the first upload. Rows sent as JSON are
//! idempotent twice over: by the `Idempotency-Key`, and by each trade-in id.

use axum::Json;
use axum::body::{Body as HttpBody, Bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::error::ApiError;
use super::json::Body;
use super::params::{Id, Page};
use crate::app::App;
use crate::domain::{
    AccountId, Actor, HeldFor, Money, PageRows, RowCounts, RowOutcome, TradeInState, TransferId,
};
use crate::formats::tradein_csv::{FILE_BYTES_MAX, RejectsWriter};
use crate::service::tradein::{
    Approved, FileReport, Posted, ROWS_PER_REQUEST_MAX, RowReport, ValuationForm,
};
use crate::store::Store;
use crate::store::tradein::TradeInRow;

/// The most one valuation takes as JSON: ten fields of at most 256 bytes
/// ([`crate::domain::FIELD_MAX_BYTES`]), escaped, with their names. Bounds the rows' body.
pub const VALUATION_JSON_MAX_BYTES: usize = 3 * 1024;
/// The largest body of `POST /v1/trade-ins`: [`ROWS_PER_REQUEST_MAX`] valuations.
pub const TRADE_INS_BODY_MAX_BYTES: usize = ROWS_PER_REQUEST_MAX * VALUATION_JSON_MAX_BYTES;
/// Refused rows streamed per page of a rejects file.
const REJECTS_PAGE_ROWS: u64 = 1_000;

/// The caller as the audit trail records it: `api:NAME`.
fn actor(caller: &Caller) -> Actor {
    Actor::api(&caller.0.name)
}

/// One valuation as a warehouse sends it. Every field is text, as in a file's row, and is
/// checked as a file's row is: a field the rules refuse is that row's result (`rejected` with
/// its code), never the request's, so the schema gives each field's form in words, not as a
/// pattern the request would be refused for.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValuationBody {
    /// The warehouse's own trade-in id: 1 to 64 of `A-Z a-z 0-9 . _ : -`.
    #[schema(example = "TI-1001")]
    trade_in_id: String,
    /// The account credited, as a decimal string.
    #[schema(example = "1")]
    account_id: String,
    /// The warehouse: 1 to 64 of `A-Z a-z 0-9 . _ : -`.
    #[schema(example = "WH-EAST")]
    warehouse_id: String,
    /// The device model, free text of 1 to 100 characters.
    #[schema(example = "iPhone 13 128GB")]
    device_model: String,
    /// The IMEI (15 digits with its Luhn check digit) or the serial (4 to 32 letters and
    /// digits).
    #[schema(example = "490154203237518")]
    device_id: String,
    /// The grade.
    #[schema(example = "good")]
    grade: String,
    /// The assessed value: a decimal string with at most the currency's decimals.
    #[schema(example = "215.00")]
    value: String,
    /// ISO 4217: the account's currency.
    #[schema(example = "USD")]
    currency: String,
    /// When it was assessed: RFC 3339 with its offset.
    #[schema(example = "2026-03-01T14:30:00Z")]
    assessed_at: String,
    /// Whether this revalues an earlier valuation of the same trade-in id.
    #[serde(default)]
    revaluation: bool,
    /// The storefront country it was quoted in; when given, the account's must be it.
    #[schema(example = "US")]
    region: Option<String>,
}

impl From<ValuationBody> for ValuationForm {
    fn from(body: ValuationBody) -> Self {
        ValuationForm {
            trade_in_id: body.trade_in_id,
            account_id: body.account_id,
            warehouse_id: body.warehouse_id,
            device_model: body.device_model,
            device_id: body.device_id,
            grade: body.grade,
            value: body.value,
            currency: body.currency,
            assessed_at: body.assessed_at,
            revaluation: body.revaluation.to_string(),
            region: body.region.unwrap_or_default(),
        }
    }
}

/// Valuations sent together.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TradeInsBody {
    /// 1 to 100 valuations.
    #[schema(min_items = 1, max_items = 100)]
    valuations: Vec<ValuationBody>,
}

/// What one row did.
#[derive(Serialize, ToSchema)]
#[schema(as = TradeInRowResult)]
pub struct RowView {
    /// The request's row from 1, or the file's line.
    #[schema(minimum = 1)]
    row: i64,
    /// The warehouse's trade-in id, where it parsed.
    #[serde(skip_serializing_if = "Option::is_none")]
    trade_in_ref: Option<String>,
    outcome: RowOutcome,
    /// tender's id for the valuation recorded or found; absent when refused, and in a file's
    /// report.
    #[serde(skip_serializing_if = "Option::is_none")]
    valuation_id: Option<i64>,
    /// A refusal's stable code.
    #[schema(required = true)]
    code: Option<String>,
    /// A refusal's reason, one sentence.
    #[schema(required = true)]
    reason: Option<String>,
}

impl From<RowReport> for RowView {
    fn from(r: RowReport) -> Self {
        RowView {
            row: r.row,
            trade_in_ref: r.trade_in_id,
            outcome: r.outcome,
            valuation_id: r.id,
            code: r.code,
            reason: r.reason,
        }
    }
}

/// Each valuation's result, in the request's order.
#[derive(Serialize, ToSchema)]
pub struct TradeInResults {
    results: Vec<RowView>,
}

/// How an upload's rows ended.
#[derive(Serialize, ToSchema)]
pub struct RowCountsView {
    total: i64,
    accepted: i64,
    unchanged: i64,
    revalued: i64,
    rejected: i64,
}

impl From<RowCounts> for RowCountsView {
    fn from(c: RowCounts) -> Self {
        RowCountsView {
            total: c.total,
            accepted: c.accepted,
            unchanged: c.unchanged,
            revalued: c.revalued,
            rejected: c.rejected,
        }
    }
}

/// Why an upload was refused as a whole.
#[derive(Serialize, ToSchema)]
pub struct FileRefusal {
    /// The stable code, such as `tradein_file.ragged`.
    code: String,
    /// One sentence, with the header a file must have.
    message: String,
}

/// An upload of valuations and its result so far.
#[derive(Serialize, ToSchema)]
#[schema(as = TradeInFile)]
pub struct FileView {
    file_id: i64,
    /// `receiving`, `received` (waiting for the import job), `staged`, `imported` or
    /// `refused`.
    #[schema(example = "imported")]
    state: String,
    /// The hex SHA-256 of its bytes.
    #[schema(required = true)]
    sha256: Option<String>,
    bytes: i64,
    rows: RowCountsView,
    /// Why it was refused as a whole; null otherwise.
    #[schema(required = true)]
    error: Option<FileRefusal>,
    /// Whether this answers a second upload of the same bytes with the first one's report.
    repeated: bool,
    #[schema(value_type = String, format = DateTime)]
    received_at: DateTime<Utc>,
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    finished_at: Option<DateTime<Utc>>,
}

impl From<FileReport> for FileView {
    fn from(report: FileReport) -> Self {
        let f = report.file;
        FileView {
            file_id: f.file_id,
            state: f.state.as_str().to_string(),
            sha256: f.sha256,
            bytes: f.bytes,
            rows: f.rows.into(),
            error: f.error.map(|(code, message)| FileRefusal { code, message }),
            repeated: report.repeated,
            received_at: f.received_at,
            finished_at: f.finished_at,
        }
    }
}

/// An upload's report: the upload and a page of its rows' results.
#[derive(Serialize, ToSchema)]
pub struct FileReportView {
    file: FileView,
    /// At most `limit` rows, in line order.
    rows: Vec<RowView>,
    /// The cursor for the next page, as its `after`; null on the last page.
    #[schema(required = true)]
    next: Option<i64>,
}

/// A valuation.
#[derive(Serialize, ToSchema)]
#[schema(as = TradeIn)]
pub struct TradeInView {
    id: i64,
    warehouse_id: String,
    /// The warehouse's own trade-in id.
    trade_in_ref: String,
    account_id: AccountId,
    /// The assessed value in force.
    value: Money,
    /// What has been posted to the account for it, net.
    credited: Money,
    /// What a claw-back could not take back.
    owed: Money,
    grade: String,
    /// The device model; null once the account's personal data is erased.
    #[schema(required = true)]
    device_model: Option<String>,
    /// The last 4 characters of the serial or IMEI; null once erased.
    #[schema(required = true)]
    device_last4: Option<String>,
    state: TradeInState,
    /// Why it waits for finance; null unless held.
    #[schema(required = true)]
    held_for: Option<HeldFor>,
    /// Finance's reason, once rejected.
    #[schema(required = true)]
    reason: Option<String>,
    /// How many valuations it has had.
    revision: i32,
    #[schema(value_type = String, format = DateTime)]
    assessed_at: DateTime<Utc>,
}

impl From<TradeInRow> for TradeInView {
    fn from(r: TradeInRow) -> Self {
        let currency = r.value.currency();
        TradeInView {
            id: r.id,
            warehouse_id: r.warehouse_id,
            trade_in_ref: r.trade_in_ref,
            account_id: r.account_id,
            value: r.value,
            credited: Money::from_minor(r.credited_minor, currency),
            owed: Money::from_minor(r.owed_minor, currency),
            grade: r.grade.as_str().to_string(),
            device_model: r.device_model,
            device_last4: r
                .device_id
                .map(|d| d[d.len().saturating_sub(4)..].to_string()),
            state: r.state,
            held_for: r.held_for,
            reason: r.reason,
            revision: r.revision,
            assessed_at: r.assessed_at,
        }
    }
}

/// What an approval did.
#[derive(Serialize, ToSchema)]
pub struct ApprovalView {
    /// `posted`, or `held` if it could still not be posted.
    #[schema(example = "posted")]
    outcome: String,
    /// The transfer, where money moved.
    #[schema(value_type = Option<i64>, required = true)]
    transfer_id: Option<TransferId>,
    /// What moved to (positive) or from (negative) the account; null for a repeat.
    #[schema(required = true)]
    amount: Option<Money>,
    /// Whether it was approved before: nothing new was written.
    replayed: bool,
}

impl From<Approved> for ApprovalView {
    fn from(a: Approved) -> Self {
        match a.posted {
            Some(Posted::Posted {
                transfer_id,
                amount,
                ..
            }) => ApprovalView {
                outcome: "posted".into(),
                transfer_id,
                amount: Some(amount),
                replayed: a.replayed,
            },
            Some(Posted::Held { .. }) => ApprovalView {
                outcome: "held".into(),
                transfer_id: None,
                amount: None,
                replayed: a.replayed,
            },
            None => ApprovalView {
                outcome: "posted".into(),
                transfer_id: None,
                amount: None,
                replayed: a.replayed,
            },
        }
    }
}

/// A rejection's body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectBody {
    /// A reason code: 1 to 32 of `a-z 0-9 - _`.
    #[schema(example = "wrong_device", pattern = r"^[a-z0-9_-]{1,32}$")]
    reason: String,
}

/// Takes in 1 to 100 valuations: each gets its result (`accepted`, `unchanged`, `revalued` or
/// `rejected` with its code and reason), the good ones are recorded together and queued for
/// posting, and nothing of a refused row is applied.
#[utoipa::path(
    post,
    path = "/v1/trade-ins",
    operation_id = "submit_trade_ins",
    tag = "trade-ins",
    request_body = TradeInsBody,
    responses((status = 200, description = "Each valuation's result", body = TradeInResults)),
)]
pub async fn submit<S: Store>(
    State(app): State<App<S>>,
    caller: Caller,
    Body(body): Body<TradeInsBody>,
) -> Result<Json<TradeInResults>, ApiError> {
    let forms: Vec<ValuationForm> = body.valuations.into_iter().map(Into::into).collect();
    let results = app
        .services()
        .trade_ins()
        .submit(&forms, &actor(&caller))
        .await?;
    Ok(Json(TradeInResults {
        results: results.into_iter().map(RowView::from).collect(),
    }))
}

/// Uploads a CSV file of valuations (`Content-Type: text/csv`, at most 256 MiB), streamed to
/// storage: 202 with the upload's id, imported by a job; its report and rejects are at
/// `GET /v1/trade-in-files/{id}` and `…/rejects`. The same bytes sent again answer 200 with
/// the first upload.
#[utoipa::path(
    post,
    path = "/v1/trade-in-files",
    operation_id = "upload_trade_in_file",
    tag = "trade-ins",
    request_body(content = String, content_type = "text/csv", description = "The CSV file"),
    responses(
        (status = 202, description = "Stored, to be imported", body = FileView),
        (status = 200, description = "These bytes were uploaded before: that upload", body = FileView),
        (status = 413, description = "Over 256 MiB", body = super::doc::ErrorBody),
        (status = 415, description = "Not text/csv", body = super::doc::ErrorBody),
    ),
)]
pub async fn upload<S: Store>(
    State(app): State<App<S>>,
    caller: Caller,
    request: Request,
) -> Result<Response, ApiError> {
    let csv = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("text/csv"));
    if !csv {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "api.unsupported_media_type",
            "the body must be a CSV file, sent with Content-Type: text/csv",
        ));
    }
    let limit = usize::try_from(FILE_BYTES_MAX).unwrap_or(usize::MAX);
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > FILE_BYTES_MAX) {
        return Err(super::json::too_large(limit));
    }
    let mut seen = 0usize;
    let body = request.into_body().into_data_stream().map(move |chunk| {
        let chunk = chunk.map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "api.bad_body",
                "the body could not be read",
            )
        })?;
        seen += chunk.len();
        if seen > limit {
            return Err(super::json::too_large(limit));
        }
        Ok::<Bytes, ApiError>(chunk)
    });
    let received = app
        .services()
        .trade_ins()
        .receive(Box::pin(body), &actor(&caller))
        .await??;
    let status = if received.repeated {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(FileView::from(received))).into_response())
}

/// An upload's report: its state and counts, and a page of its rows' results in line order
/// (`limit`, and `after` a line).
#[utoipa::path(
    get,
    path = "/v1/trade-in-files/{id}",
    operation_id = "trade_in_file",
    tag = "trade-ins",
    params(
        ("id" = i64, Path, minimum = 1, example = 1, description = "The upload"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100,
            description = "Rows at most: 1 to 100, default 20"),
        ("after" = Option<i64>, Query, minimum = 1, description = "Rows after this line"),
    ),
    responses((status = 200, description = "The upload and a page of its rows", body = FileReportView)),
)]
pub async fn file<S: Store>(
    State(app): State<App<S>>,
    Id(id): Id,
    page: Page,
) -> Result<Json<FileReportView>, ApiError> {
    let trade_ins = app.services().trade_ins();
    let report = trade_ins.file(id).await?;
    let rows = trade_ins
        .file_rows(
            id,
            page.after.unwrap_or(0),
            PageRows::new(u64::from(page.limit))?,
        )
        .await?;
    let next = (rows.len() == page.limit as usize)
        .then(|| rows.last().map(|r| r.row))
        .flatten();
    Ok(Json(FileReportView {
        file: report.into(),
        rows: rows.into_iter().map(RowView::from).collect(),
        next,
    }))
}

/// An upload's rejects file (CSV): the upload's header after `line` and `reason`, then each
/// refused row as sent, every cell that a spreadsheet would run as a formula quoted with a
/// leading `'`. Streamed a page at a time.
#[utoipa::path(
    get,
    path = "/v1/trade-in-files/{id}/rejects",
    operation_id = "trade_in_file_rejects",
    tag = "trade-ins",
    params(("id" = i64, Path, minimum = 1, example = 1, description = "The upload")),
    responses((status = 200, description = "The rejects file", content_type = "text/csv", body = String)),
)]
pub async fn rejects<S: Store>(
    State(app): State<App<S>>,
    Id(id): Id,
) -> Result<Response, ApiError> {
    let rows = PageRows::new(REJECTS_PAGE_ROWS)?;
    // The first page before the answer starts: an unknown upload is still a 404.
    let first = app.services().trade_ins().rejects_page(id, 0, rows).await?;
    let (send, receive) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(2);
    tokio::spawn(async move {
        let mut page = first;
        let mut header = true;
        loop {
            let written = (|| {
                let mut writer = if header {
                    RejectsWriter::new(Vec::new(), &page.header)?
                } else {
                    RejectsWriter::continuing(Vec::new())
                };
                for reject in &page.rows {
                    writer.reject(
                        reject.line,
                        &reject.reason,
                        reject.cells.iter().map(String::as_str),
                    )?;
                }
                Ok::<_, csv::Error>(writer.finish()?)
            })();
            header = false;
            let chunk = written.map(Bytes::from).map_err(std::io::Error::other);
            let failed = chunk.is_err();
            if send.send(chunk).await.is_err() || failed {
                return;
            }
            let Some(after) = page.next else {
                return;
            };
            page = match app
                .services()
                .trade_ins()
                .rejects_page(id, after, rows)
                .await
            {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(file = id, code = %crate::error::Classify::code(&e), "a rejects page could not be read");
                    let _ = send.send(Err(std::io::Error::other("rejects page"))).await;
                    return;
                }
            };
        }
    });
    let stream = tokio_stream_from(receive);
    Ok((
        [(CONTENT_TYPE, "text/csv; charset=utf-8")],
        HttpBody::from_stream(stream),
    )
        .into_response())
}

/// A channel's receiver as a stream.
fn tokio_stream_from<T: Send + 'static>(
    mut receive: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| receive.poll_recv(cx))
}

/// A valuation.
#[utoipa::path(
    get,
    path = "/v1/trade-ins/{id}",
    operation_id = "show_trade_in",
    tag = "trade-ins",
    params(("id" = i64, Path, minimum = 1, example = 1, description = "tender's id for the valuation")),
    responses((status = 200, description = "The valuation", body = TradeInView)),
)]
pub async fn show<S: Store>(
    State(app): State<App<S>>,
    Id(id): Id,
) -> Result<Json<TradeInView>, ApiError> {
    let row = app.services().trade_ins().show(id).await?;
    Ok(Json(row.into()))
}

/// Approves a held valuation and posts it past the daily amount and the price band. The
/// approving key must not be the one that sent it (`409 tradein.self_approval`); approving
/// again answers `replayed: true` and writes nothing.
#[utoipa::path(
    post,
    path = "/v1/trade-ins/{id}/approve",
    operation_id = "approve_trade_in",
    tag = "trade-ins",
    params(("id" = i64, Path, minimum = 1, example = 1, description = "The held valuation")),
    responses((status = 200, description = "Approved", body = ApprovalView)),
)]
pub async fn approve<S: Store>(
    State(app): State<App<S>>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<ApprovalView>, ApiError> {
    let approved = app
        .services()
        .trade_ins()
        .approve(id, &actor(&caller))
        .await?;
    Ok(Json(approved.into()))
}

/// Rejects a held valuation with a reason code: nothing is posted, and the trade-in id can
/// no longer be revalued.
#[utoipa::path(
    post,
    path = "/v1/trade-ins/{id}/reject",
    operation_id = "reject_trade_in",
    tag = "trade-ins",
    params(("id" = i64, Path, minimum = 1, example = 1, description = "The held valuation")),
    request_body = RejectBody,
    responses((status = 200, description = "Rejected", body = TradeInView)),
)]
pub async fn reject<S: Store>(
    State(app): State<App<S>>,
    caller: Caller,
    Id(id): Id,
    Body(body): Body<RejectBody>,
) -> Result<Json<TradeInView>, ApiError> {
    let row = app
        .services()
        .trade_ins()
        .reject(id, &body.reason, &actor(&caller))
        .await?;
    Ok(Json(row.into()))
}
