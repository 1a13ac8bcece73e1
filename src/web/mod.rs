//! The customer's page: sign in by link, see the balance and its history, redeem a gift card.
//! Server-rendered HTML over the same services the API calls, with one stylesheet and one small
//! script, both served from here (no third-party asset, nothing inline, so the
//! Content-Security-Policy allows only this origin's files).
//!
//! Every page lives under `/account`, the session cookie's path, so the cookie never travels
//! to the API. Forms post back (`POST`, a CSRF token bound to the session) and are answered
//! with a 303 to the page, which shows the outcome once: a reload never posts again, and a
//! code never reaches a URL, a title or the browser's history.

pub mod format;
mod pages;

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};

use crate::app::App;
use crate::config::ClientAddressHeader;
use crate::domain::ClientAddress;
use crate::store::Store;

/// The pages' route templates, for the request log and the metrics' route label.
pub const PAGES: &[&str] = &[
    "/account",
    "/account/sign-in",
    "/account/redeem",
    "/account/sign-out",
    "/account/assets/tender.css",
    "/account/assets/redeem.js",
];

/// The largest form body read: the redeem form is under 300 bytes; anything much larger is not
/// one of ours.
pub const FORM_BODY_MAX_BYTES: usize = 4 * 1024;

/// The policy every page is served under: only this origin's script, style, images and form
/// targets; no inline script or style, no framing, no plugins.
pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

/// The stable code of a page's refusal or failure, left on its response for the request log
/// and the metrics (a page answers in HTML, so there is no error body to read it from).
#[derive(Debug, Clone, Copy)]
pub struct PageRefusal(pub &'static str);

/// The page's routes, to merge into the API's router (which adds the request id, the log
/// line, the metrics and the timeout to them as to every route).
pub fn router<S: Store>() -> Router<App<S>> {
    Router::new()
        .route("/account", get(pages::account::<S>))
        .route("/account/sign-in", get(pages::sign_in::<S>))
        .route("/account/redeem", post(pages::redeem::<S>))
        .route("/account/sign-out", post(pages::sign_out::<S>))
        .route("/account/assets/tender.css", get(pages::stylesheet))
        .route("/account/assets/redeem.js", get(pages::script))
        .layer(DefaultBodyLimit::max(FORM_BODY_MAX_BYTES))
        .layer(middleware::from_fn(protect))
}

/// The headers every page and asset carries: the policy above, no caching of what is private
/// (a balance, a form's token), no referrer (a sign-in link's token must not leak to another
/// site), no MIME sniffing, no framing.
async fn protect(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let fixed = [
        (
            CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE),
        ),
        (REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    ];
    for (name, value) in fixed {
        headers.insert(name, value);
    }
    headers
        .entry(CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// The end user's address: the last address of the trusted proxy's header when one is set,
/// otherwise the connection's peer. `None` when the header is missing or holds no address.
fn client_address(
    headers: &HeaderMap,
    peer: Option<&ConnectInfo<SocketAddr>>,
    header: Option<&ClientAddressHeader>,
) -> Option<ClientAddress> {
    match header {
        Some(name) => {
            let value = headers.get(name.as_str())?.to_str().ok()?;
            ClientAddress::from_header(value)
        }
        None => peer.map(|ConnectInfo(addr)| ClientAddress::of(addr.ip())),
    }
}
