//! The one mapping from a classified error to an HTTP response: the kind picks the status,
//! the body carries the stable code and the error's sentence. Causes stay in the log.
//!
//! The body is `{"error": {"code", "message", "request_id"}}`. A handler does not know its
//! request's id, so [`ApiError`] leaves the code and message on the response and the request-id
//! middleware in [`crate::api`] renders the body.

use axum::Json;
use axum::http::header::WWW_AUTHENTICATE;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::{Classify, Kind};

/// An error as the API answers it.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Headers the answer needs (`Retry-After`, `WWW-Authenticate`).
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    /// An error the API layer itself finds, with its stable code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        let mut headers = Vec::new();
        if status == StatusCode::UNAUTHORIZED {
            // RFC 9110: a 401 names the scheme that would be accepted.
            headers.push((WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        ApiError {
            status,
            code,
            message: message.into(),
            headers,
        }
    }

    /// The same error with `name: value` on its response.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> ApiError {
        self.headers.push((name, value));
        self
    }

    /// The same error answered with `status` instead of the one its kind picks.
    pub fn with_status(self, status: StatusCode) -> ApiError {
        ApiError { status, ..self }
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The sentence.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The response body for the request `request_id`.
    pub(super) fn render(&self, request_id: &str) -> Json<serde_json::Value> {
        Json(json!({
            "error": { "code": self.code, "message": self.message, "request_id": request_id }
        }))
    }
}

impl<E: Classify + std::fmt::Display> From<E> for ApiError {
    fn from(error: E) -> Self {
        let status = match error.kind() {
            Kind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            Kind::NotFound => StatusCode::NOT_FOUND,
            Kind::Conflict => StatusCode::CONFLICT,
            Kind::Transient => StatusCode::SERVICE_UNAVAILABLE,
            Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, error.code(), error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // The body is rendered by the request-id middleware, which knows the id.
        let mut response = self.status.into_response();
        for (name, value) in &self.headers {
            response.headers_mut().insert(name, value.clone());
        }
        response.extensions_mut().insert(self);
        response
    }
}
