//! The HTTP API: the REST hooks endpoints, the admin API under `/api/v1`, health endpoints, bearer-token authentication and the
//! error shape. The only module that knows status codes; it calls into `store`, `scripts` and
//! `events` and adds nothing of its own to what they decide.

mod admin;
mod backfills;
mod catalogue;
mod error;
mod filters;
mod grid;
mod health;
mod history;
mod hooks;
mod nodes;
pub(crate) mod openapi;
mod rate_limit;
mod rest_hooks;
mod scripts;
mod test_sends;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use tokio::sync::Notify;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;

pub use admin::Sessions;
pub(crate) use error::parse_json;
pub use error::{ApiError, AppJson, AppQuery};
pub use openapi::document as openapi_document;
pub use rate_limit::RateLimits;

use crate::config::{ApiToken, Role};
use crate::delivery::{TargetError, TargetPolicy};
use crate::scripts::{SandboxPool, ScriptRegistry};
use crate::store::Store;

/// Requests larger than this are refused with 413 before they are read whole.
const BODY_LIMIT: usize = 1024 * 1024;

/// How much of a refused body herald still reads (and throws away) before it answers, and for how
/// long: a client that is still sending when the answer comes and the connection closes gets a
/// broken pipe instead of the 413. Bigger or slower bodies are cut off as before.
const REFUSED_BODY_DRAIN: usize = 16 * 1024 * 1024;
const REFUSED_BODY_DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub registry: Arc<ScriptRegistry>,
    pub sandboxes: Arc<SandboxPool>,
    pub targets: Arc<TargetPolicy>,
    /// Every token the API accepts, with its role.
    pub tokens: Arc<Vec<ApiToken>>,
    /// This process as a node of its database.
    pub node: Arc<crate::node::Node>,
    /// Whether the tracker runs and moves.
    pub tracker: Arc<crate::tracking::TrackerPulse>,
    pub worker_alive: Arc<AtomicBool>,
    /// Wakes the delivery worker when a request made deliveries due (a retry).
    pub deliveries_waiting: Arc<Notify>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Sign-in sessions of the admin pages.
    pub sessions: Arc<Sessions>,
    /// Requests per token.
    pub rate_limits: Arc<RateLimits>,
    /// Where the generated API token is kept (the sign-in page names it).
    pub token_file: Arc<str>,
    /// This node's worker's room: a hook's rate limit applies here the moment it is saved (the
    /// other nodes read it within a second).
    pub capacity: Arc<crate::delivery::Capacity>,
    /// How long one delivery attempt may take (a test send waits that long for its answer).
    pub delivery_timeout: std::time::Duration,
}

pub fn router(state: AppState) -> Router {
    let (protected, _) = openapi::protected_routes().split_for_parts();
    let (public, _) = openapi::public_routes().split_for_parts();
    let protected =
        protected.route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .merge(protected)
        .merge(public)
        .merge(admin::routes(state.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(refuse_oversized_bodies))
        .with_state(state)
}

/// Refuses a body whose `Content-Length` is over the limit before any handler runs, the way
/// nginx's lingering close does: the body is read and thrown away (up to `REFUSED_BODY_DRAIN`),
/// then the 413 goes out, so that a client that writes its whole body before reading the answer
/// sees the 413 rather than a reset. A client that asked `Expect: 100-continue` has sent nothing
/// yet and is answered at once. Bodies without a length are cut off by `DefaultBodyLimit`.
async fn refuse_oversized_bodies(request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let Some(length) = declared.filter(|length| *length > BODY_LIMIT as u64) else {
        return next.run(request).await;
    };
    let waits_for_continue = request
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if !waits_for_continue && length <= REFUSED_BODY_DRAIN as u64 {
        use http_body_util::BodyExt;
        let mut body = request.into_body();
        let drain = async { while let Some(Ok(_)) = body.frame().await {} };
        let _ = tokio::time::timeout(REFUSED_BODY_DRAIN_TIME, drain).await;
    }
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("the request body is {length} bytes; herald takes at most {BODY_LIMIT}"),
    )
    .into_response()
}

/// Who made an authenticated request: the token's name and role. The middleware puts it in the
/// request's extensions; handlers that decide by owner (unsubscribe) read it.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub name: String,
    pub role: Role,
}

/// The name under which the admin pages' session calls the API.
const ADMIN_PAGES_CALLER: &str = "admin pages session";

async fn require_token(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or_default());
    let peer = client_address(&state, &request);
    if presented.is_some() {
        match state.rate_limits.sign_in_blocked(&state.store, peer).await {
            Ok(None) => {}
            Ok(Some(wait)) => return too_many_failed_sign_ins(wait).into_response(),
            Err(e) => return e.into_response(),
        }
    }
    let error = match presented {
        None => match admin::api_session(&state, request.method(), request.headers()).await {
            Some(Ok(())) => {
                request.extensions_mut().insert(Caller {
                    name: ADMIN_PAGES_CALLER.into(),
                    role: Role::Admin,
                });
                return within_rate(&state, ADMIN_PAGES_CALLER, request, next).await;
            }
            Some(Err(refused)) => return refused.into_response(),
            None => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing_token",
                "send the API token as Authorization: Bearer <token>",
            ),
        },
        Some(value) => match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
                match find_token(&state.tokens, token.trim()).map(|t| (t.role, t.name.clone())) {
                    Some((role, name))
                        if role == Role::Admin || request.uri().path().starts_with("/EPT_") =>
                    {
                        request.extensions_mut().insert(Caller {
                            name: name.clone(),
                            role,
                        });
                        return within_rate(&state, &name, request, next).await;
                    }
                    Some(_) => {
                        return ApiError::new(
                            StatusCode::FORBIDDEN,
                            "forbidden",
                            "this token may only use the REST hooks endpoints (/EPT_...)",
                        )
                        .into_response()
                    }
                    None => ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "invalid_token",
                        "the bearer token is not valid",
                    ),
                }
            }
            _ => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the bearer token is not valid",
            ),
        },
    };
    if error.code == "invalid_token" {
        tracing::warn!(peer = %peer, path = %request.uri().path(), "refused an invalid API token");
        match state.rate_limits.failed_sign_in(&state.store, peer).await {
            Ok(Ok(())) => {}
            Ok(Err(wait)) => return too_many_failed_sign_ins(wait).into_response(),
            Err(e) => return e.into_response(),
        }
    }
    let mut response = error.into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    response
}

/// The client's address: the TCP peer, or what a trusted proxy says it forwarded.
pub(crate) fn client_address(state: &AppState, request: &Request) -> std::net::IpAddr {
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip())
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    state.rate_limits.client_address(peer, request.headers())
}

fn too_many_failed_sign_ins(wait: std::time::Duration) -> Response {
    too_many_requests(wait, |seconds| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many wrong tokens from this address; try again in {seconds} s"),
        )
        .into_response()
    })
}

/// A 429 answer built by `answer` from the wait in whole seconds (at least 1), with `Retry-After`.
pub(crate) fn too_many_requests(
    wait: std::time::Duration,
    answer: impl FnOnce(u64) -> Response,
) -> Response {
    let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
    let mut response = answer(seconds);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
    response
}

/// Lets an authenticated request through unless its caller is over its rate.
async fn within_rate(state: &AppState, caller: &str, request: Request, next: Next) -> Response {
    match state.rate_limits.check(caller) {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            state.metrics.rate_limited(caller);
            too_many_requests(wait, |seconds| {
                ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!("too many requests for this token; try again in {seconds} s"),
                )
                .into_response()
            })
        }
    }
}

/// The token presented, comparing against every token in constant time so that the time taken
/// says nothing about which, or how much of one, matched.
fn find_token<'a>(tokens: &'a [ApiToken], presented: &str) -> Option<&'a ApiToken> {
    let mut found = None;
    for token in tokens {
        if constant_time_eq::constant_time_eq(presented.as_bytes(), token.token.as_bytes()) {
            found = found.or(Some(token));
        }
    }
    found
}

fn token_role(tokens: &[ApiToken], presented: &str) -> Option<Role> {
    find_token(tokens, presented).map(|t| t.role)
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

impl AppState {
    /// Runs `f` on the store on a blocking thread (every store call blocks); a store error becomes
    /// the API's error.
    pub(crate) async fn on_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, crate::store::StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let store = self.store.clone();
        blocking(move || f(&store).map_err(ApiError::from)).await
    }
}

/// Runs blocking work (SQLite, rhai) off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)?
}

/// A target URL as herald will call it, or a 422 that says exactly what is wrong with it: not
/// http(s), a host that does not resolve, or an address in a refused range.
pub(crate) async fn checked_target(state: &AppState, url: &str) -> Result<String, ApiError> {
    match state.targets.check(url).await {
        Ok(url) => Ok(url.to_string()),
        Err(e) => {
            let code = match e {
                TargetError::Refused { .. } => "refused_target",
                TargetError::Unresolvable(_) => "unresolvable_target",
                TargetError::NotHttps => "https_required",
                TargetError::Credentials => "credentials_in_target_url",
                TargetError::TooLong(_) => "target_url_too_long",
                _ => "invalid_target_url",
            };
            Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                code,
                e.to_string(),
            ))
        }
    }
}

/// A cursor that this API did not give out.
pub(crate) fn invalid_cursor(text: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_cursor",
        format!(
            "cursor '{text}' is not one this API gave out; pass next_cursor of the previous page"
        ),
    )
}

/// The most entries one page of a listing holds, and the default (the Procore pages' 25).
pub(crate) const MAX_PAGE: usize = 100;
pub(crate) const DEFAULT_PAGE: usize = 25;

/// `cursor` and `limit` of a listing: a cursor is the `next_cursor` of the previous page.
pub(crate) fn parse_page(
    cursor: Option<&str>,
    limit: Option<&str>,
) -> Result<(Option<i64>, usize), ApiError> {
    let cursor = match cursor.map(str::trim).filter(|c| !c.is_empty()) {
        None => None,
        Some(text) => Some(
            text.parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| invalid_cursor(text))?,
        ),
    };
    let limit = match limit.map(str::trim).filter(|l| !l.is_empty()) {
        None => DEFAULT_PAGE,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_limit",
                    format!("limit must be a whole number from 1 to {MAX_PAGE}"),
                )
            })?,
    };
    Ok((cursor, limit))
}
