//! JSON in: [`Body`] reads a request body the way every JSON route must, so none can forget a
//! rule. The media type must be JSON (415), the body within the route's limit (413), and the
//! document exactly the route's shape (400): an unknown field, a duplicate key, a missing field
//! or a JSON number where a decimal string belongs is refused, naming the field.
//!
//! A refusal never quotes the body: a body may hold a code, and `serde_json`'s own messages
//! quote the values they choke on. Only the field's path, built from the route's own field
//! names, and what was expected there are said.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// The largest body a JSON route reads: its documents are a few fields, never more than a few
/// hundred bytes, so 16 KiB is generous and still bounds what a client makes the server hold.
pub const JSON_BODY_MAX_BYTES: usize = 16 * 1024;

/// A route's own body limit, where it takes more than [`JSON_BODY_MAX_BYTES`]: set beside its
/// `DefaultBodyLimit`, read back to say the limit when a body is over it.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// The body limit in force for `request`.
pub fn limit_of(extensions: &axum::http::Extensions) -> usize {
    extensions
        .get::<BodyLimit>()
        .map_or(JSON_BODY_MAX_BYTES, |limit| limit.0)
}

/// A JSON request body of shape `T`, read strictly.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Body<T>, ApiError> {
        if !is_json(&request) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "api.unsupported_media_type",
                "the body must be JSON, sent with Content-Type: application/json",
            ));
        }
        let limit = limit_of(request.extensions());
        let bytes = Bytes::from_request(request, state)
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
        parse(&bytes).map(Body)
    }
}

/// The refusal of a body over its route's limit of `limit` bytes.
pub fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "api.body_too_large",
        format!("the body is over this route's limit of {limit} bytes"),
    )
}

/// Whether the request says its body is JSON (`application/json`, any parameters).
fn is_json(request: &Request) -> bool {
    request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// `bytes` as a `T`, or a 400 that names the field and what it wanted, never its value.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let refused = |path: &str, error: &serde_json::Error| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "api.bad_body",
            explain(path, error),
        )
    };
    let mut json = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut json)
        .map_err(|error| refused(&error.path().to_string(), error.inner()))?;
    // Trailing bytes after the document are refused too: two documents are not one.
    json.end().map_err(|error| refused("", &error))?;
    Ok(value)
}

/// One sentence about a refused document, from parts that cannot hold a client's value.
fn explain(path: &str, error: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let text = error.to_string();
    match error.classify() {
        Category::Syntax | Category::Eof | Category::Io => format!(
            "the body is not one well-formed JSON document (line {}, column {})",
            error.line(),
            error.column()
        ),
        Category::Data => {
            // serde names these with the field in backticks; a field name the client made up
            // is not repeated, since it could be anything, a code included.
            if text.starts_with("missing field") {
                format!("{} is required", quoted_field(&text, path))
            } else if text.starts_with("duplicate field") {
                format!("{} is given twice", quoted_field(&text, path))
            } else if text.starts_with("unknown field") {
                let expected = text
                    .split_once(", expected ")
                    .map_or(String::new(), |(_, rest)| {
                        format!("; expected {}", strip_position(rest))
                    });
                format!("the body has a field this route does not take{expected}")
            } else if let Some((_, expected)) = text.split_once(", expected ") {
                let at = if path.is_empty() || path == "." {
                    "the body".to_string()
                } else {
                    format!("`{path}`")
                };
                format!(
                    "{at} must be {}; amounts, codes and ids are JSON strings",
                    strip_position(expected)
                )
            } else {
                format!("`{path}` is not valid here")
            }
        }
    }
}

/// The field serde names in backticks, qualified by the path to its parent; the path alone
/// when serde named none.
fn quoted_field(text: &str, path: &str) -> String {
    let field = text.split('`').nth(1).unwrap_or_default();
    let parent = if path.is_empty() || path == "." {
        ""
    } else {
        path
    };
    match (parent.is_empty(), field.is_empty()) {
        (true, false) => format!("`{field}`"),
        (false, false) => format!("`{parent}.{field}`"),
        (_, true) => format!("`{path}`"),
    }
}

/// serde_json's " at line L column C" suffix, dropped: the sentence names the field instead.
fn strip_position(text: &str) -> &str {
    text.split(" at line ").next().unwrap_or(text)
}

/// The largest whole number a JSON number with a fraction or exponent (`1000.0`, `1e3`) is read
/// as exactly: 2^53, the last integer an IEEE double holds without a gap. A bound on a count
/// read from JSON, never money: amounts are decimal strings.
const WHOLE_FLOAT_MAX: f64 = 9_007_199_254_740_992.0;

/// A whole number as JSON Schema's `integer` reads one: `1000`, `1000.0` and `1e3` alike, since
/// JSON has one number type. A fraction, a sign or a value out of `T`'s range is refused.
pub fn whole<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    use serde::de::{Error, Unexpected};
    let number = serde_json::Number::deserialize(deserializer)?;
    let value = match (number.as_u64(), number.as_f64()) {
        (Some(value), _) => value,
        (None, Some(float)) if float.fract() == 0.0 && (0.0..=WHOLE_FLOAT_MAX).contains(&float) => {
            // Exact: a whole number within 2^53 converts without rounding.
            float as u64
        }
        (None, Some(float)) => {
            return Err(D::Error::invalid_value(
                Unexpected::Float(float),
                &"a whole number",
            ));
        }
        (None, None) => return Err(D::Error::custom("expected a whole number")),
    };
    T::try_from(value).map_err(|_| {
        D::Error::invalid_value(Unexpected::Unsigned(value), &"a smaller whole number")
    })
}

/// [`whole`], or null.
pub fn whole_or_null<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    #[derive(Deserialize)]
    struct Whole<T: TryFrom<u64>>(#[serde(deserialize_with = "whole")] T);
    Ok(Option::<Whole<T>>::deserialize(deserializer)?.map(|Whole(value)| value))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Spend {
        amount: String,
        currency: String,
        order: Order,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Order {
        id: String,
    }

    fn refusal(body: &str) -> String {
        let error = parse::<Spend>(body.as_bytes()).unwrap_err();
        assert_eq!(error.code(), "api.bad_body");
        error.message().to_string()
    }

    #[test]
    fn a_missing_field_is_named() {
        assert_eq!(
            refusal(r#"{"amount": "1.00", "order": {"id": "o"}}"#),
            "`currency` is required"
        );
        assert_eq!(
            refusal(r#"{"amount": "1.00", "currency": "USD", "order": {}}"#),
            "`order.id` is required"
        );
    }

    #[test]
    fn a_duplicate_key_is_refused() {
        assert_eq!(
            refusal(
                r#"{"amount": "1.00", "amount": "2.00", "currency": "USD", "order": {"id": "o"}}"#
            ),
            "`amount` is given twice"
        );
    }

    #[test]
    fn a_number_where_a_decimal_string_belongs_is_refused_without_its_value() {
        let message =
            refusal(r#"{"amount": 1234567812345678, "currency": "USD", "order": {"id": "o"}}"#);
        assert_eq!(
            message,
            "`amount` must be a string; amounts, codes and ids are JSON strings"
        );
    }

    #[test]
    fn an_unknown_field_is_refused_without_repeating_its_name() {
        let message = refusal(
            r#"{"amount": "1.00", "currency": "USD", "order": {"id": "o"}, "4111111111111111": 1}"#,
        );
        assert!(!message.contains("4111"), "{message}");
        assert!(
            message.starts_with("the body has a field this route does not take"),
            "{message}"
        );
    }

    #[test]
    fn broken_json_and_trailing_bytes_are_refused_by_position() {
        assert_eq!(
            refusal(r#"{"amount": "#),
            "the body is not one well-formed JSON document (line 1, column 11)"
        );
        assert!(
            refusal(r#"{"amount": "1.00", "currency": "USD", "order": {"id": "o"}} x"#)
                .starts_with("the body is not one well-formed JSON document")
        );
    }
}
