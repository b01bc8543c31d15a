//! The HTTP API: the REST hooks endpoints, the admin API under `/api/v1`, health endpoints, bearer-token authentication and the
//! error shape. The only module that knows status codes; it calls into `store`, `scripts` and
//! `events` and adds nothing of its own to what they decide.

mod error;
mod health;
mod rest_hooks;
mod scripts;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;

pub use error::{ApiError, AppJson, AppQuery};

use crate::delivery::TargetPolicy;
use crate::scripts::{SandboxPool, ScriptRegistry};
use crate::store::Store;

/// Requests larger than this are refused with 413 before they are read whole.
const BODY_LIMIT: usize = 1024 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub registry: Arc<ScriptRegistry>,
    pub sandboxes: Arc<SandboxPool>,
    pub targets: Arc<TargetPolicy>,
    pub token: Arc<str>,
    pub tracker_alive: Arc<AtomicBool>,
    pub worker_alive: Arc<AtomicBool>,
}

pub fn router(state: AppState) -> Router {
    let protected = Router::new()
        .route("/EPT_WebhookSubscribe", post(rest_hooks::subscribe))
        .route(
            "/EPT_WebhookSubscribe/{id}",
            delete(rest_hooks::unsubscribe_by_path),
        )
        .route("/EPT_WebhookUnsubscribe", post(rest_hooks::unsubscribe))
        .route(
            "/EPT_WebhookPerformList",
            get(rest_hooks::perform_list_query).post(rest_hooks::perform_list_body),
        )
        .route("/api/v1/scripts", get(scripts::list))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .merge(protected)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or_default());
    let error = match presented {
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing_token",
            "send the API token as Authorization: Bearer <token>",
        ),
        Some(value) => match value.split_once(' ') {
            Some((scheme, token))
                if scheme.eq_ignore_ascii_case("bearer")
                    && constant_time_eq::constant_time_eq(
                        token.trim().as_bytes(),
                        state.token.as_bytes(),
                    ) =>
            {
                return next.run(request).await;
            }
            _ => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the bearer token is not valid",
            ),
        },
    };
    let mut response = error.into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    response
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found("not_found", format!("no route for {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} does not take {method}", uri.path()),
    )
}

/// Runs blocking work (SQLite, rhai) off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)?
}
