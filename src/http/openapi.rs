//! The OpenAPI 3.1 document, generated from the handlers' annotations by utoipa: the routes are
//! registered through `utoipa_axum`'s router, so a route cannot exist without its documentation and
//! the document cannot list a route that does not exist.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{
    backfills, catalogue, filters, grid, health, history, hooks, nodes, rest_hooks, scripts,
    test_sends, AppState,
};

/// Every error: a 4xx (or an opaque 5xx) with this body.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// snake_case, stable: what programs test.
    code: String,
    /// What is wrong, in words: what people read.
    message: String,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "herald",
        description = "Webhook trigger runtime for applications whose data lives in SQLite or PostgreSQL: REST hooks endpoints, the admin API under /api/v1, health and metrics endpoints. Every endpoint but /healthz, /readyz and /metrics takes `Authorization: Bearer <token>`.",
    ),
    modifiers(&BearerToken),
    security(("bearer" = [])),
    components(schemas(ErrorBody, ErrorDetail)),
    tags(
        (name = "rest-hooks", description = "Subscribe, unsubscribe and sample, with the CRM's endpoint names"),
        (name = "hooks", description = "Hooks as administrators configure them, and their resource grid"),
        (name = "history", description = "Deliveries log and event history of a hook"),
        (name = "catalogue", description = "What a hook can select"),
        (name = "scripts", description = "The scripts folder as herald sees it"),
        (name = "operations", description = "Health, metrics, the nodes and this document"),
    )
)]
struct ApiDoc;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The routes behind the bearer token.
pub(super) fn protected_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(rest_hooks::me))
        .routes(routes!(rest_hooks::subscribe))
        .routes(routes!(rest_hooks::unsubscribe_by_path))
        .routes(routes!(rest_hooks::unsubscribe))
        .routes(routes!(
            rest_hooks::perform_list_query,
            rest_hooks::perform_list_body
        ))
        .routes(routes!(hooks::create, hooks::list))
        .routes(routes!(hooks::get, hooks::update, hooks::delete))
        .routes(routes!(hooks::rotate_secret))
        .routes(routes!(filters::test))
        .routes(routes!(test_sends::send))
        .routes(routes!(backfills::start))
        .routes(routes!(backfills::list))
        .routes(routes!(backfills::get))
        .routes(routes!(backfills::cancel))
        .routes(routes!(grid::grid))
        .routes(routes!(grid::tick_cell, grid::clear_cell))
        .routes(routes!(grid::select_trigger, grid::unselect_trigger))
        .routes(routes!(history::deliveries))
        .routes(routes!(history::delivery))
        .routes(routes!(history::events))
        .routes(routes!(history::retry_event))
        .routes(routes!(history::discard_event))
        .routes(routes!(history::retry_failed))
        .routes(routes!(history::summary))
        .routes(routes!(catalogue::list))
        .routes(routes!(scripts::list))
        .routes(routes!(nodes::list))
        .routes(routes!(openapi_json))
}

/// The routes anyone may call.
pub(super) fn public_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
}

/// The whole document.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut document = protected_routes().merge(public_routes()).into_openapi();
    add_common_errors(&mut document);
    document
}

/// The errors any protected route may answer, whatever it does: a missing or wrong token, a role
/// that does not reach it, a malformed query or body, a busy database, an internal fault. Written
/// once here rather than on every handler, so that no route forgets them.
fn add_common_errors(document: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::path::ParameterIn;
    use utoipa::openapi::{Content, Ref, RefOr, ResponseBuilder};

    let error = |description: &str| -> RefOr<utoipa::openapi::Response> {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    Content::new(Some(Ref::from_schema_name("ErrorBody"))),
                )
                .build(),
        )
    };
    for item in document.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            // `security(())` on a handler: open to anyone.
            let public = operation
                .security
                .as_ref()
                .is_some_and(|s| s.iter().all(|r| r == &Default::default()));
            if public {
                continue;
            }
            let has_query = operation.parameters.as_ref().is_some_and(|ps| {
                ps.iter()
                    .any(|p| matches!(p.parameter_in, ParameterIn::Query))
            });
            let has_body = operation.request_body.is_some();
            let responses = &mut operation.responses.responses;
            let mut add = |status: &str, description: &str| {
                responses
                    .entry(status.to_owned())
                    .or_insert_with(|| error(description));
            };
            add("401", "No token, or not a valid one");
            add("403", "The token's role does not reach this route");
            add(
                "429",
                "This token is over its rate; Retry-After says how many seconds to wait",
            );
            add("500", "An internal fault, logged; the body says no more");
            add("503", "The database is locked by another writer; try again");
            if has_query {
                add("400", "A query parameter that cannot be read");
            }
            if has_body {
                add(
                    "400",
                    "The body is not well-formed JSON, or nests deeper than 32 levels",
                );
                add("413", "The body is over 1 MiB");
                add("415", "The body is not sent as application/json");
                add(
                    "422",
                    "The body does not have the expected fields and types",
                );
            }
        }
    }
}

static DOCUMENT: OnceLock<String> = OnceLock::new();

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", operation_id = "getOpenApiDocument", description = "This OpenAPI 3.1 document, generated from the handlers.", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json")))]
pub async fn openapi_json() -> impl IntoResponse {
    let json = DOCUMENT.get_or_init(|| {
        document()
            .to_json()
            .expect("the generated document serialises")
    });
    ([(header::CONTENT_TYPE, "application/json")], json.as_str())
}
