//! Who is calling: every `/v1` route and `/metrics` take `Authorization: Bearer KEY`, checked by
//! the API-key service. An absent, malformed, unknown or revoked key is one answer, 401 with
//! `WWW-Authenticate: Bearer`, that says nothing of which; a known key whose role a route does
//! not allow is 403.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::app::App;
use crate::domain::{ApiClient, ApiRole};
use crate::service::api_keys::ApiKeyError;
use crate::store::Store;

/// The longest `Authorization` header read: a tender key is 58 characters; anything much longer
/// is not one, and is refused before it is looked at.
pub const AUTHORIZATION_MAX_BYTES: usize = 256;

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller(pub ApiClient);

impl Caller {
    /// The caller, when its role is one of `allowed`; otherwise 403.
    pub fn allowed(self, allowed: &[ApiRole]) -> Result<Caller, ApiError> {
        if allowed.contains(&self.0.role) {
            Ok(self)
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "api.forbidden",
                format!("a {} key may not call this route", self.0.role.as_str()),
            ))
        }
    }
}

/// The one refusal for every key that does not authenticate.
fn unauthenticated() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "api.unauthenticated",
        "a valid API key is required: Authorization: Bearer KEY",
    )
}

/// The key check in front of every keyed route (see [`crate::api::Access`]): authenticates
/// the key, checks its role against `roles`, and leaves the [`Caller`] in the request for the
/// handler, so a refused key is answered before its request's body is read.
pub async fn authorize<S: Store>(
    State((app, roles)): State<(App<S>, &'static [ApiRole])>,
    request: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = request.into_parts();
    match authenticate(&parts.headers, &app)
        .await
        .and_then(|caller| caller.allowed(roles))
    {
        Ok(caller) => {
            parts.extensions.insert(caller);
            next.run(Request::from_parts(parts, body)).await
        }
        Err(refused) => refused.into_response(),
    }
}

/// The caller `headers` authenticate: an absent, malformed, unknown or revoked key is 401; a
/// failure of the database or a key file is not the caller's fault, and answered as its kind.
pub async fn authenticate<S: Store>(headers: &HeaderMap, app: &App<S>) -> Result<Caller, ApiError> {
    let header = headers
        .get(AUTHORIZATION)
        .filter(|value| value.len() <= AUTHORIZATION_MAX_BYTES)
        .and_then(|value| value.to_str().ok())
        .ok_or_else(unauthenticated)?;
    let key = header
        .strip_prefix("Bearer ")
        .ok_or_else(unauthenticated)?
        .trim();
    match app.services().api_keys().authenticate(key).await {
        Ok(client) => Ok(Caller(client)),
        Err(ApiKeyError::Unauthenticated) => Err(unauthenticated()),
        Err(error) => Err(ApiError::from(error)),
    }
}

impl<S: Store> FromRequestParts<App<S>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App<S>) -> Result<Caller, ApiError> {
        // The key check in front of the route left the caller here: one check per request.
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        authenticate(&parts.headers, app).await
    }
}
