//! The HTTP API: [`router`] builds the routes over an [`App`], [`serve`] runs them on a
//! listener until a shutdown future resolves, then gives requests in flight [`REQUEST_GRACE`].
//! Handlers are thin over the services, and [`error::ApiError`] maps every classified error to
//! a status in one place.
//!
//! Every route is added through [`Routes`], which keeps the list of what the router serves:
//! the OpenAPI document ([`doc`]) is tested against that list, so no route goes undocumented.
//! Every JSON body is read by [`json::Body`], so no route forgets a rule of hostile input.

pub mod accounts;
pub mod auth;
pub mod batches;
pub mod cards;
pub mod doc;
pub mod error;
pub mod idempotency;
pub mod json;
pub mod observe;
pub mod params;
pub mod redeem;
pub mod schema;
pub mod settlements;
pub mod tradein;

use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::extract::{Request, State};
use axum::handler::Handler;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use axum::{Extension, Json, Router};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::app::App;
use crate::domain::ApiRole;
use crate::store::Store;
use error::ApiError;

/// How long requests in flight may take to finish once shutdown begins; then their
/// connections are closed. Under the 30 seconds orchestrators commonly wait after SIGTERM
/// before they kill, so the server still exits on its own and logs what it cut.
pub const REQUEST_GRACE: Duration = Duration::from_secs(20);

/// The response header naming the request, for support to find it in the logs.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A request's id, as the request-id middleware made it: in the request's extensions for the
/// layers and handlers inside, and sent back as [`REQUEST_ID`].
#[derive(Debug, Clone)]
pub struct RequestId(String);

impl RequestId {
    /// The id, a ULID.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How long one request may take before it is answered 503 `api.timeout` and its work is
/// dropped (an open transaction rolls back). Under [`REQUEST_GRACE`], so a shutdown never cuts
/// a request that could still have finished; far over any unit of work, which takes
/// milliseconds, so only a stuck database reaches it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a trade-in file upload may take: 256 MiB at about 4 Mbit/s. Longer than the
/// shutdown grace, so a shutdown may cut an upload; its sender sends it again.
pub const UPLOAD_TIMEOUT: Duration = Duration::from_secs(600);

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: the probes and the OpenAPI document.
    Open,
    /// A valid key of one of these roles; any other key is 403, no valid key 401. Which
    /// objects the key may touch (its retailer's cards) the handler checks.
    Roles(&'static [ApiRole]),
}

/// One route: its method and its path as the router and the OpenAPI document spell it, and who
/// may call it, as the README's table says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `GET`, `POST`, …
    pub method: Method,
    /// `/v1/accounts/{id}`, …
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// Whether it moves value: it then takes an `Idempotency-Key` header.
    pub moving: bool,
}

/// The router under construction, with the list of the routes it serves.
pub struct Routes<S: Store> {
    app: App<S>,
    router: Router<App<S>>,
    served: Vec<Route>,
    /// The paths whose GET takes query parameters; every other route refuses a query string.
    queried: Vec<&'static str>,
}

impl<S: Store> Routes<S> {
    fn new(app: App<S>) -> Routes<S> {
        Routes {
            app,
            router: Router::new(),
            served: Vec::new(),
            queried: Vec::new(),
        }
    }

    /// Adds `route` at `path` for `method`, behind the key check `access` asks for: the key is
    /// authenticated and its role checked before anything else of the request is read.
    fn add(
        mut self,
        method: Method,
        path: &'static str,
        access: Access,
        moving: bool,
        route: MethodRouter<App<S>>,
    ) -> Self {
        let route = match access {
            Access::Open => route,
            Access::Roles(roles) => route.route_layer(middleware::from_fn_with_state(
                (self.app.clone(), roles),
                auth::authorize::<S>,
            )),
        };
        self.router = self.router.route(path, route);
        self.served.push(Route {
            method,
            path,
            access,
            moving,
        });
        self
    }

    /// `GET path`: a read.
    pub fn get<H: Handler<T, App<S>>, T: 'static>(
        self,
        path: &'static str,
        access: Access,
        handler: H,
    ) -> Self {
        self.add(Method::GET, path, access, false, get(handler))
    }

    /// `GET path?…`: a read that takes query parameters (a page's `limit` and `after`).
    pub fn get_queried<H: Handler<T, App<S>>, T: 'static>(
        mut self,
        path: &'static str,
        access: Access,
        handler: H,
    ) -> Self {
        self.queried.push(path);
        self.get(path, access, handler)
    }

    /// `POST path` that moves no value (creating an account, blocking a card).
    pub fn post<H: Handler<T, App<S>>, T: 'static>(
        self,
        path: &'static str,
        access: Access,
        handler: H,
    ) -> Self {
        self.add(Method::POST, path, access, false, post(handler))
    }

    /// `POST path` that moves value: it takes an `Idempotency-Key` header, and a retry under
    /// the same key gets the first answer (see [`idempotency`]). The layer wraps this route
    /// alone, so a method the path does not take is still a plain 405.
    pub fn post_moving<H: Handler<T, App<S>>, T: 'static>(
        self,
        path: &'static str,
        access: Access,
        handler: H,
    ) -> Self {
        let layer = middleware::from_fn_with_state(self.app.clone(), idempotency::idempotent::<S>);
        self.add(
            Method::POST,
            path,
            access,
            true,
            post(handler).route_layer(layer),
        )
    }

    /// `POST path` that moves value, as [`Routes::post_moving`], reading a body of up to
    /// `limit` bytes instead of [`json::JSON_BODY_MAX_BYTES`].
    pub fn post_moving_up_to<H: Handler<T, App<S>>, T: 'static>(
        self,
        path: &'static str,
        access: Access,
        limit: usize,
        handler: H,
    ) -> Self {
        let layer = middleware::from_fn_with_state(self.app.clone(), idempotency::idempotent::<S>);
        let route: MethodRouter<App<S>> = post(handler)
            .route_layer(layer)
            .layer::<_, std::convert::Infallible>(DefaultBodyLimit::max(limit))
            .layer::<_, std::convert::Infallible>(Extension(json::BodyLimit(limit)));
        self.add(Method::POST, path, access, true, route)
    }

    /// The routes added so far.
    pub fn served(&self) -> &[Route] {
        &self.served
    }
}

/// Every route over `app`, with the list of them.
pub fn routes<S: Store>(app: App<S>) -> (Router, Vec<Route>) {
    use ApiRole::*;
    let routes = Routes::new(app.clone())
        .get("/healthz", Access::Open, healthz)
        .get("/readyz", Access::Open, readyz::<S>)
        .get("/openapi.json", Access::Open, openapi)
        .get("/metrics", Access::Roles(&[Admin]), metrics::<S>)
        .post(
            "/v1/batches",
            Access::Roles(&[Admin]),
            batches::request::<S>,
        )
        .get(
            "/v1/batches/{id}",
            Access::Roles(&[Admin, Support, Finance, Pos]),
            batches::show::<S>,
        )
        .post_moving(
            "/v1/activations",
            Access::Roles(&[Pos]),
            cards::activate::<S>,
        )
        .post_moving("/v1/voids", Access::Roles(&[Pos]), cards::void::<S>)
        .get(
            "/v1/cards/{serial}",
            Access::Roles(&[Pos, Support, Finance, Admin]),
            cards::show::<S>,
        )
        .post(
            "/v1/cards/{serial}/block",
            Access::Roles(&[Support, Admin]),
            cards::block::<S>,
        )
        .post(
            "/v1/cards/{serial}/unblock",
            Access::Roles(&[Support, Admin]),
            cards::unblock::<S>,
        )
        .post(
            "/v1/accounts",
            Access::Roles(&[Redeem, Support]),
            accounts::open::<S>,
        )
        .get(
            "/v1/accounts/{id}",
            Access::Roles(&[Redeem, Support, Finance]),
            accounts::show::<S>,
        )
        .post(
            "/v1/accounts/{id}/sign-in-links",
            Access::Roles(&[Redeem]),
            accounts::sign_in_link::<S>,
        )
        .get(
            "/v1/accounts/{id}/balance",
            Access::Roles(&[Redeem, Support, Finance]),
            accounts::balance::<S>,
        )
        .get_queried(
            "/v1/accounts/{id}/history",
            Access::Roles(&[Redeem, Support, Finance]),
            accounts::history::<S>,
        )
        .get_queried(
            "/v1/accounts/{id}/attempts",
            Access::Roles(&[Support]),
            accounts::attempts::<S>,
        )
        .post_moving(
            "/v1/accounts/{id}/redemptions",
            Access::Roles(&[Redeem]),
            redeem::redeem::<S>,
        )
        .post_moving(
            "/v1/accounts/{id}/spends",
            Access::Roles(&[Redeem]),
            accounts::spend::<S>,
        )
        .post_moving(
            "/v1/accounts/{id}/refunds",
            Access::Roles(&[Redeem, Support]),
            accounts::refund::<S>,
        )
        .post_moving(
            "/v1/accounts/{id}/adjustments",
            Access::Roles(&[Support]),
            accounts::adjust::<S>,
        )
        .post_moving(
            "/v1/adjustments/{id}/approve",
            Access::Roles(&[Support]),
            accounts::approve::<S>,
        )
        .post_moving_up_to(
            "/v1/trade-ins",
            Access::Roles(&[Warehouse]),
            tradein::TRADE_INS_BODY_MAX_BYTES,
            tradein::submit::<S>,
        )
        .post(
            "/v1/trade-in-files",
            Access::Roles(&[Warehouse]),
            tradein::upload::<S>,
        )
        .get_queried(
            "/v1/trade-in-files/{id}",
            Access::Roles(&[Warehouse, Finance]),
            tradein::file::<S>,
        )
        .get(
            "/v1/trade-in-files/{id}/rejects",
            Access::Roles(&[Warehouse, Finance]),
            tradein::rejects::<S>,
        )
        .get(
            "/v1/trade-ins/{id}",
            Access::Roles(&[Warehouse, Finance, Support]),
            tradein::show::<S>,
        )
        .post_moving(
            "/v1/trade-ins/{id}/approve",
            Access::Roles(&[Finance]),
            tradein::approve::<S>,
        )
        .post(
            "/v1/trade-ins/{id}/reject",
            Access::Roles(&[Finance]),
            tradein::reject::<S>,
        )
        .get(
            "/v1/settlements/{date}/files/{name}",
            Access::Roles(&[Finance]),
            settlements::file::<S>,
        );
    let Routes {
        router,
        served,
        queried,
        ..
    } = routes;
    let document = OpenApiJson(
        doc::document(&served)
            .to_json()
            .expect("the document serialises")
            .into(),
    );
    let mut templates: Vec<&'static str> = served.iter().map(|route| route.path).collect();
    templates.extend_from_slice(crate::web::PAGES);
    templates.sort_unstable();
    templates.dedup();
    let observer = observe::Observer {
        app: app.clone(),
        routes: templates.into(),
    };
    let router = router
        .layer(middleware::from_fn_with_state(
            Arc::new(queried),
            refuse_query,
        ))
        // The customer's page: its own headers and form limits, past the API's query rule
        // (its sign-in link and history pages take query strings, never a code).
        .merge(crate::web::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(app)
        .layer(Extension(document))
        .layer(DefaultBodyLimit::max(json::JSON_BODY_MAX_BYTES))
        .layer(middleware::from_fn(timeout))
        // Inside the request id (which it logs) and before the error body is rendered (the
        // error's code is still on the response).
        .layer(middleware::from_fn_with_state(
            observer,
            observe::observe::<S>,
        ))
        .layer(middleware::from_fn(request_id));
    (router, served)
}

/// Every route, over `app`.
pub fn router<S: Store>(app: App<S>) -> Router {
    routes(app).0
}

/// Serves `router(app)` on `listener` until `shutdown` resolves; then it accepts no more
/// connections and requests in flight have [`REQUEST_GRACE`] to finish.
pub async fn serve<S: Store>(
    listener: TcpListener,
    app: App<S>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stopping = Arc::new(Notify::new());
    let signal = {
        let stopping = stopping.clone();
        async move {
            shutdown.await;
            // A stored permit: the grace clock starts even before it is awaited.
            stopping.notify_one();
        }
    };
    // With each connection's peer: the customer's page counts its redemption limits by it.
    let service = router(app).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let server = axum::serve(listener, service)
        .with_graceful_shutdown(signal)
        .into_future();
    let grace_over = async {
        stopping.notified().await;
        tokio::time::sleep(REQUEST_GRACE).await;
    };
    tokio::select! {
        served = server => served,
        () = grace_over => {
            tracing::warn!(
                grace_secs = REQUEST_GRACE.as_secs(),
                "requests still in flight after the grace period were cut"
            );
            Ok(())
        }
    }
}

/// Names every request with a new random id, sent back as `X-Request-Id` and in any error
/// body. The caller's own id is not taken: it would let a client forge log lines.
async fn request_id(mut request: Request, next: Next) -> Response {
    let id = ulid::Ulid::generate().to_string();
    request.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(request).await;
    if let Some(error) = response.extensions_mut().remove::<ApiError>() {
        let status = response.status();
        let headers = std::mem::take(response.headers_mut());
        response = (status, error.render(&id)).into_response();
        // The error's own headers (`WWW-Authenticate`, `Retry-After`) stay; the body's are new.
        for (name, value) in &headers {
            if name != CONTENT_TYPE && name != CONTENT_LENGTH {
                response.headers_mut().insert(name, value.clone());
            }
        }
    }
    let value = HeaderValue::from_str(&id).expect("a ULID is a valid header value");
    response.headers_mut().insert(REQUEST_ID, value);
    response
}

/// Refuses a query string on every route that takes none: a code must never travel in a URL,
/// where proxies and browsers keep it, so a request that puts anything there is refused before
/// it is read, and the query is never echoed or logged.
async fn refuse_query(
    State(queried): State<Arc<Vec<&'static str>>>,
    request: Request,
    next: Next,
) -> Response {
    let takes_query = request.method() == Method::GET
        && request
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .is_some_and(|path| queried.contains(&path.as_str()));
    if request.uri().query().is_some() && !takes_query {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "api.query_refused",
            "this route takes no query string; codes and other values travel in the JSON body",
        )
        .into_response();
    }
    next.run(request).await
}

/// Answers 503 `api.timeout` for a request not done within [`REQUEST_TIMEOUT`]; its work is
/// dropped, so an open transaction rolls back.
async fn timeout(request: Request, next: Next) -> Response {
    // An upload streams up to 256 MiB: it gets the time that takes on a slow link.
    let bound = if request.method() == Method::POST && request.uri().path() == "/v1/trade-in-files"
    {
        UPLOAD_TIMEOUT
    } else {
        REQUEST_TIMEOUT
    };
    match tokio::time::timeout(bound, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(timeout_secs = bound.as_secs(), "a request ran out of time");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "api.timeout",
                "the request took too long and was abandoned; nothing it began was kept, try again",
            )
            .into_response()
        }
    }
}

/// `GET /healthz`: 200 while the process serves; it does not touch the database, so an
/// orchestrator does not restart a server whose database is down.
#[utoipa::path(get, path = "/healthz", tag = "probes", security(()),
    responses((status = 200, description = "The process serves", body = Object)))]
async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 when the database answers and its schema is exactly this tender's;
/// otherwise 503 with the store's stable code (`store.busy`, `store.schema_behind`, …).
#[utoipa::path(get, path = "/readyz", tag = "probes", security(()),
    responses((status = 200, description = "The database answers with this tender's schema", body = Object)))]
async fn readyz<S: Store>(State(app): State<App<S>>) -> Result<Json<Value>, ApiError> {
    app.store()
        .check_schema()
        .await
        .map_err(|e| ApiError::from(e).with_status(StatusCode::SERVICE_UNAVAILABLE))?;
    Ok(Json(json!({ "status": "ready" })))
}

/// `GET /metrics`: this process's counters, the database pool's use and the job runner's
/// backlog, in the Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "probes",
    responses((status = 200, description = "Counters and gauges in the Prometheus text format", body = String,
        content_type = "text/plain")))]
async fn metrics<S: Store>(State(app): State<App<S>>) -> Response {
    let body = app.services().scrape().await;
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        body,
    )
        .into_response()
}

/// `GET /openapi.json`: the OpenAPI 3.1 document of every route, generated from the code.
#[utoipa::path(get, path = "/openapi.json", tag = "probes", security(()),
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
async fn openapi(Extension(OpenApiJson(document)): Extension<OpenApiJson>) -> Response {
    ([(CONTENT_TYPE, "application/json")], document.to_string()).into_response()
}

/// The OpenAPI document of the routes served, rendered once when the router is built.
#[derive(Clone)]
struct OpenApiJson(Arc<str>);

/// Any path no route serves.
async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "api.not_found",
        "no such route; see the README for the routes",
    )
}

/// A path served, with a method it is not served for.
async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "api.method_not_allowed",
        "this route does not take this method; see the README for the routes",
    )
}
