//! The OpenAPI 3.1 document, generated from the handlers' annotations: [`document`] is what
//! `GET /openapi.json` serves. A test holds it to the router's own list of routes.
//!
//! Refusals are documented once, here, rather than on every handler: each operation gets the
//! error statuses its shape can produce (401 and 403 where it takes a key, 413 and 415 where it
//! takes a body, 400 and 404 everywhere under `/v1`, 409 and 422 on writes, 503 always), each
//! with the one error body. A handler documents the statuses particular to it (429 on
//! redemption) itself.

use utoipa::openapi::Required;
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, OpenApi as Document, Ref, RefOr};
use utoipa::{Modify, OpenApi, ToSchema};

use super::{Route, accounts, batches, cards, redeem, settlements, tradein};
use crate::service::idempotency::IDEMPOTENCY_KEY_MAX_CHARS;

/// The error body every refusal carries.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    /// The refusal.
    error: ErrorDetail,
}

/// A refusal: a stable code to branch on, a sentence for people, and the request's id.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorDetail {
    /// The stable code, such as `redeem.already_redeemed`.
    code: String,
    /// One sentence saying what was wrong and what to do.
    message: String,
    /// The request's id, as in the `X-Request-Id` header.
    request_id: String,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tender",
        description = "Issues and settles stored value: gift card codes, account balances and \
                       trade-in credit. Amounts are decimal strings with a currency, never JSON \
                       numbers; codes travel only in POST bodies.",
    ),
    paths(
        super::healthz,
        super::readyz,
        super::metrics,
        super::openapi,
        redeem::redeem,
        batches::request,
        batches::show,
        cards::activate,
        cards::void,
        cards::show,
        cards::block,
        cards::unblock,
        accounts::open,
        accounts::show,
        accounts::sign_in_link,
        accounts::balance,
        accounts::history,
        accounts::attempts,
        accounts::spend,
        accounts::refund,
        accounts::adjust,
        accounts::approve,
        tradein::submit,
        tradein::upload,
        tradein::file,
        tradein::rejects,
        tradein::show,
        tradein::approve,
        tradein::reject,
        settlements::file,
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&Security, &Refusals),
    security(("bearer" = [])),
)]
struct ApiDoc;

/// The document `GET /openapi.json` serves for `routes`: each value-moving route's operation
/// gets the `Idempotency-Key` header it requires, from the router's own list, so the two
/// cannot disagree.
pub fn document(routes: &[Route]) -> Document {
    let mut doc = ApiDoc::openapi();
    for route in routes.iter().filter(|route| route.moving) {
        let operation = doc
            .paths
            .paths
            .get_mut(route.path)
            .and_then(|item| item.post.as_mut());
        if let Some(operation) = operation {
            operation
                .parameters
                .get_or_insert_with(Vec::new)
                .push(idempotency_key_parameter());
        }
    }
    doc
}

/// The `Idempotency-Key` header: required, and shaped as the idempotency layer accepts it.
fn idempotency_key_parameter() -> Parameter {
    ParameterBuilder::new()
        .name("Idempotency-Key")
        .parameter_in(ParameterIn::Header)
        .required(Required::True)
        .description(Some(format!(
            "The request's idempotency key, scoped to the calling key: 1 to {IDEMPOTENCY_KEY_MAX_CHARS} \
             printable ASCII characters without spaces. A retry with the same key and body gets \
             the first answer; another body under it is 422; a request still in flight under \
             it is 409."
        )))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(format!("^[!-~]{{1,{IDEMPOTENCY_KEY_MAX_CHARS}}}$")))
                .min_length(Some(1))
                .max_length(Some(IDEMPOTENCY_KEY_MAX_CHARS)),
        ))
        .build()
}

/// The one security scheme: `Authorization: Bearer KEY`.
struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key from `tender api-key create`: tdr_live_<key id>_<secret>",
                    ))
                    .build(),
            ),
        );
    }
}

/// Adds to every operation the refusals its shape can produce.
struct Refusals;

impl Modify for Refusals {
    fn modify(&self, doc: &mut Document) {
        for (path, item) in doc.paths.paths.iter_mut() {
            let versioned = path.starts_with("/v1/");
            for (operation, writes) in [
                (item.get.as_mut(), false),
                (item.post.as_mut(), true),
                (item.put.as_mut(), true),
                (item.delete.as_mut(), true),
                (item.patch.as_mut(), true),
            ] {
                let Some(operation) = operation else { continue };
                let keyed = !is_open(operation);
                let mut statuses = vec![(
                    "503",
                    "The database is unavailable or the request took too long",
                )];
                if keyed {
                    statuses.push(("401", "No valid API key"));
                    statuses.push(("403", "The key's role may not call this route"));
                }
                if versioned {
                    statuses.push(("400", "A malformed request: header, body or parameter"));
                    statuses.push(("404", "No such object, or not one this key may see"));
                }
                if operation.request_body.is_some() {
                    statuses.push(("413", "The body is over the route's limit"));
                    statuses.push(("415", "The body is not sent as application/json"));
                }
                if writes && versioned {
                    statuses.push((
                        "409",
                        "The object's state, or a request in flight, forbids it",
                    ));
                    statuses.push((
                        "422",
                        "A value was refused, or an idempotency key reused with another body",
                    ));
                }
                for (status, description) in statuses {
                    if !operation.responses.responses.contains_key(status) {
                        operation
                            .responses
                            .responses
                            .insert(status.to_string(), refusal(description));
                    }
                }
            }
        }
    }
}

/// Whether an operation is marked open (`security(())`): no key needed.
fn is_open(operation: &Operation) -> bool {
    operation.security.as_ref().is_some_and(|schemes| {
        schemes
            .iter()
            .all(|s| serde_json::to_value(s).is_ok_and(|v| v == serde_json::json!({})))
    })
}

/// A refusal's response: the error body.
fn refusal(description: &str) -> RefOr<Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                Content::new(Some(RefOr::Ref(Ref::from_schema_name("ErrorBody")))),
            )
            .build(),
    )
}
