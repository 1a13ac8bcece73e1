//! Path and query parameters, read as strictly as [`super::json::Body`] reads a body: a refusal
//! is a JSON [`ApiError`] with a stable code, never axum's plain-text rejection, and it names the
//! parameter without quoting the value (a client may paste a code anywhere).
//!
//! Ids in a path are positive 64-bit integers. A path id that is not one (letters, zero, a sign,
//! more than 19 digits) is `400 api.bad_id`: the request is malformed, whereas a well-formed id
//! of nothing is `404` from the service.

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;

use super::error::ApiError;

/// The most lines one page of a listing holds: what a client shows at once. Bounded so that one
/// request reads and sends a bounded amount, and well under the store's own `PAGE_ROWS_MAX`.
pub const PAGE_LIMIT_MAX: u32 = 100;

/// The lines a page holds when the request names no `limit`.
pub const PAGE_LIMIT_DEFAULT: u32 = 20;

/// The longest query string read: `limit` and `after` take under 50 bytes; anything much
/// longer is not a request of ours, and is refused before it is parsed.
pub const QUERY_MAX_BYTES: usize = 256;

/// The one positive integer id in a request's path (`/v1/accounts/{id}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Id(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Id, ApiError> {
        let axum::extract::Path(text) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| bad_id())?;
        positive(&text).map(Id).ok_or_else(bad_id)
    }
}

/// The refusal of a path id that is not a positive integer.
fn bad_id() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "api.bad_id",
        "the id in the path must be a whole number from 1 to 9223372036854775807",
    )
}

/// `text` as a positive `i64`: ASCII digits only, so no sign, space or `+` slips through.
fn positive(text: &str) -> Option<i64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|id| *id > 0)
}

/// A page request: `?limit=N&after=CURSOR`, both optional. `after` is the cursor a previous
/// page returned as `next` (the id of its last line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// 1 to [`PAGE_LIMIT_MAX`] lines; [`PAGE_LIMIT_DEFAULT`] when not given.
    pub limit: u32,
    /// Lines older than this one.
    pub after: Option<i64>,
}

impl<S: Send + Sync> FromRequestParts<S> for Page {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Page, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        let (limit, after) = parse_page(query)?;
        Ok(Page {
            limit: limit.unwrap_or(PAGE_LIMIT_DEFAULT),
            after,
        })
    }
}

/// `limit` and `after` from a raw query string; any other parameter, a repeated one or a
/// value out of bounds is refused.
fn parse_page(query: &str) -> Result<(Option<u32>, Option<i64>), ApiError> {
    if query.len() > QUERY_MAX_BYTES {
        return Err(bad_query("the query string is too long"));
    }
    let (mut limit, mut after) = (None, None);
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "limit" if limit.is_none() => {
                let n = positive(value)
                    .filter(|n| *n <= i64::from(PAGE_LIMIT_MAX))
                    .ok_or_else(|| {
                        bad_query(&format!(
                            "`limit` must be a whole number from 1 to {PAGE_LIMIT_MAX}"
                        ))
                    })?;
                limit = Some(u32::try_from(n).expect("at most PAGE_LIMIT_MAX"));
            }
            "after" if after.is_none() => {
                after = Some(positive(value).ok_or_else(|| {
                    bad_query("`after` must be the `next` cursor of a previous page")
                })?);
            }
            "limit" | "after" => {
                return Err(bad_query(&format!("`{name}` is given twice")));
            }
            // The name is not repeated: it could be anything, a code included.
            _ => {
                return Err(bad_query(
                    "the query has a parameter this route does not take; see /openapi.json",
                ));
            }
        }
    }
    Ok((limit, after))
}

/// The refusal of a malformed query string.
fn bad_query(message: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "api.bad_query", message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_id_is_a_positive_integer_in_plain_digits() {
        assert_eq!(positive("1"), Some(1));
        assert_eq!(positive("9223372036854775807"), Some(i64::MAX));
        for text in [
            "",
            "0",
            "-1",
            "+1",
            " 1",
            "1.0",
            "1e3",
            "9223372036854775808",
            "abc",
        ] {
            assert_eq!(positive(text), None, "{text:?}");
        }
    }

    #[test]
    fn a_page_takes_limit_and_after_once_each_within_bounds() {
        assert_eq!(parse_page("").unwrap(), (None, None));
        assert_eq!(parse_page("limit=5&after=17").unwrap(), (Some(5), Some(17)));
        assert_eq!(parse_page("after=3").unwrap(), (None, Some(3)));
        for query in [
            "limit=0",
            "limit=101",
            "limit=-1",
            "limit=",
            "limit",
            "after=0",
            "after=x",
            "limit=1&limit=2",
            "code=7000000000000001",
        ] {
            let error = parse_page(query).unwrap_err();
            assert_eq!(error.code(), "api.bad_query", "{query}");
            assert!(!error.message().contains("7000"), "{query}");
        }
        assert_eq!(
            parse_page(&"a".repeat(QUERY_MAX_BYTES + 1))
                .unwrap_err()
                .code(),
            "api.bad_query"
        );
    }
}
