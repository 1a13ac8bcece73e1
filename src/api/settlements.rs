//! Settlement reports over HTTP: finance fetches a closed day's files, the same bytes the CLI
//! exports, from any host.

use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::app::App;
use crate::domain::BusinessDate;
use crate::store::Store;

/// The longest report name: the longest file a settlement writes is under 30 characters.
const FILE_NAME_MAX_CHARS: usize = 64;

/// `{date}` and `{name}` of `/v1/settlements/{date}/files/{name}`.
pub struct DayFile {
    date: BusinessDate,
    name: String,
}

impl<S: Send + Sync> FromRequestParts<S> for DayFile {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<DayFile, ApiError> {
        let axum::extract::Path((date, name)) =
            axum::extract::Path::<(String, String)>::from_request_parts(parts, state)
                .await
                .map_err(|_| bad_date())?;
        let date = match BusinessDate::parse(&date) {
            Ok(date) => date,
            // A real calendar date outside tender's range is well formed: no day of it closed.
            Err(_) if chrono::NaiveDate::parse_from_str(&date, "%Y-%m-%d").is_ok() => {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "settle.not_settled",
                    "no business day before 2000-01-01 or after 9998-12-31 is ever settled",
                ));
            }
            Err(_) => return Err(bad_date()),
        };
        // Report names are lower-case words with `_` and one `.`: nothing else is looked up.
        let plain = !name.is_empty()
            && name.len() <= FILE_NAME_MAX_CHARS
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.');
        if !plain {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "api.bad_file_name",
                "a report name is lower-case letters, digits, `_` and `.`, such as roll_forward.csv",
            ));
        }
        Ok(DayFile { date, name })
    }
}

fn bad_date() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "api.bad_date",
        "the date in the path must be a business date written YYYY-MM-DD",
    )
}

/// One file of a closed business day, byte for byte as stored when the day closed:
/// `roll_forward.csv`, `retailer_statements.csv`, `journal.csv`, `payments.csv`,
/// `trade_ins.csv`, `manifest.json` (each file's size and SHA-256) or `manifest.sig` (its
/// Ed25519 signature under the seal key).
#[utoipa::path(
    get,
    path = "/v1/settlements/{date}/files/{name}",
    tag = "settlements",
    params(
        ("date" = String, Path, format = Date, example = "2026-12-04", description = "The business date"),
        ("name" = String, Path, pattern = "^[a-z0-9_.]{1,64}$", example = "roll_forward.csv", description = "The file"),
    ),
    responses(
        (status = 200, description = "The file: CSV, the manifest's JSON, or its signature's line", content(
            (String = "text/csv"),
            (serde_json::Value = "application/json"),
            (String = "text/plain"),
        )),
        (status = 404, description = "The day is not closed, or has no such file", body = super::doc::ErrorBody),
    ),
)]
pub async fn file<S: Store>(
    State(app): State<App<S>>,
    DayFile { date, name }: DayFile,
) -> Result<Response, ApiError> {
    let bytes = app.services().settlement().file(date, &name).await?;
    let content_type = match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("csv") => "text/csv; charset=utf-8",
        Some("json") => "application/json",
        _ => "text/plain; charset=utf-8",
    };
    let disposition = format!("attachment; filename=\"{date}-{name}\"");
    Ok((
        [
            (CONTENT_TYPE, content_type.to_string()),
            (CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    )
        .into_response())
}
