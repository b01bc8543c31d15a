//! The admin pages at `/admin`: the Webhooks page of the Procore help pages, served by herald
//! itself. Server-rendered HTML (askama templates, compiled into the binary with the CSS and the
//! script), with a little progressive JavaScript: the grid's checkboxes save the moment they are
//! clicked, the deliveries log pages and filters in place, an entry opens to its detail.
//!
//! The pages call the same functions as the admin API handlers (`hooks::create_hook`,
//! `history::deliveries_page`, ...), and the script calls the admin API itself, signed in by the
//! session cookie and the CSRF token; nothing here decides anything the API does not.
//!
//! Sign-in takes an admin API token once and gives a session cookie (`session.rs`). Every form
//! carries the session's CSRF token, every script request sends it as `x-csrf-token`, and a POST
//! whose `Origin` is another site is refused before it is read.

mod hook_actions;
mod i18n;
mod pages;
mod session;
mod view;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

pub(crate) use session::SessionInfo;
pub use session::Sessions;

use super::{token_role, ApiError, AppState};
use crate::config::Role;
use session::Flash;

/// The routes of the admin pages.
pub(super) fn routes(state: AppState) -> Router<AppState> {
    let signed_in = Router::new()
        .route("/admin", get(pages::index))
        .route("/admin/", get(|| async { Redirect::to("/admin") }))
        .route("/admin/hooks", post(pages::create_hook))
        .route(
            "/admin/hooks/{id}",
            get(pages::hook).post(hook_actions::update_hook),
        )
        .route("/admin/hooks/{id}/status", post(hook_actions::set_status))
        .route("/admin/hooks/{id}/filter", post(hook_actions::filter))
        .route("/admin/hooks/{id}/test", post(hook_actions::send_test))
        .route(
            "/admin/hooks/{id}/backfill",
            post(hook_actions::start_backfill),
        )
        .route(
            "/admin/hooks/{id}/backfills/{backfill_id}/cancel",
            post(hook_actions::cancel_backfill),
        )
        .route(
            "/admin/hooks/{id}/rotate-secret",
            post(hook_actions::rotate_secret),
        )
        .route("/admin/hooks/{id}/delete", post(hook_actions::delete_hook))
        .route("/admin/hooks/{id}/deliveries", get(pages::deliveries))
        .route("/admin/hooks/{id}/deliveries/{seq}", get(pages::delivery))
        .route(
            "/admin/hooks/{id}/events/{event_id}/retry",
            post(hook_actions::retry_event),
        )
        .route(
            "/admin/hooks/{id}/events/{event_id}/discard",
            post(hook_actions::discard_event),
        )
        .route(
            "/admin/hooks/{id}/retry-failed",
            post(hook_actions::retry_failed),
        )
        .route("/admin/scripts", get(pages::scripts))
        .route("/admin/api", get(pages::api_reference))
        .route("/admin/logout", post(logout))
        .route("/admin/{*rest}", get(pages::not_found))
        .route_layer(middleware::from_fn_with_state(state, require_session));
    Router::new()
        .route("/admin/login", get(login_form).post(login))
        .route("/admin/static/{file}", get(static_file))
        .route("/admin/language", get(switch_language))
        .merge(signed_in)
        .layer(middleware::from_fn(guard))
}

/// Security headers on every admin response, the refusal of cross-site POSTs (a browser sends
/// `Origin` with every POST, and one that names another site is a forged request), and the
/// request's language for everything that answers it.
async fn guard(request: Request, next: Next) -> Response {
    let lang = i18n::Lang::of_request(request.headers());
    let here = page_to_come_back_to(&request);
    i18n::speaking(lang, here, async move {
        if request.method() == Method::POST && !same_origin(request.headers()) {
            return PageError::new(
                StatusCode::FORBIDDEN,
                i18n::t("error-refused"),
                i18n::t("error-cross-site-form"),
            )
            .into_response();
        }
        with_security_headers(next.run(request).await)
    })
    .await
}

/// The page a language switch comes back to: this one when it is a page, the one the form was
/// on when it is a form's answer (a POST cannot be asked for again).
fn page_to_come_back_to(request: &Request) -> String {
    let wanted = if request.method() == Method::GET {
        request
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
    } else {
        request
            .headers()
            .get(header::REFERER)
            .and_then(|v| v.to_str().ok())
            .and_then(|r| url::Url::parse(r).ok())
            .map(|u| match u.query() {
                Some(q) => format!("{}?{q}", u.path()),
                None => u.path().to_owned(),
            })
    };
    safe_next(wanted.as_deref())
}

#[derive(serde::Deserialize, Default)]
struct LanguageQuery {
    set: Option<String>,
    back: Option<String>,
}

/// The language switch of every page: remembers the choice and goes back to the page. A code it
/// does not know changes nothing.
async fn switch_language(
    headers: HeaderMap,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let query: LanguageQuery = lenient_query(query);
    let back = safe_next(query.back.as_deref());
    let mut response = Redirect::to(&back).into_response();
    if let Some(lang) = query.set.as_deref().and_then(i18n::Lang::from_code) {
        response.headers_mut().insert(
            header::SET_COOKIE,
            lang.cookie(session::over_https(&headers)),
        );
    }
    response
}

fn with_security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    !host.is_empty() && origin_host.eq_ignore_ascii_case(host)
}

/// Lets signed-in requests through with their `SessionInfo`; sends the others to the sign-in page,
/// with the page they asked for to come back to.
async fn require_session(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    match state.sessions.from_headers(request.headers()).await {
        Err(e) => PageError::from(e).into_response(),
        Ok(Some(session)) => {
            request.extensions_mut().insert(session);
            next.run(request).await
        }
        Ok(None) => {
            let wanted = request
                .uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/admin");
            if request.method() == Method::GET && !is_fragment(request.uri().query()) {
                let back = serde_urlencoded::to_string([("next", wanted)]).unwrap_or_default();
                Redirect::to(&format!("/admin/login?{back}")).into_response()
            } else {
                PageError::new(
                    StatusCode::UNAUTHORIZED,
                    i18n::t("error-signed-out"),
                    i18n::t("error-signed-out-message"),
                )
                .into_response()
            }
        }
    }
}

fn is_fragment(query: Option<&str>) -> bool {
    query.is_some_and(|q| q.split('&').any(|p| p == "fragment=1"))
}

/// The session of a request to the API, when it carries no bearer token: the admin pages' script
/// calls the API with the session cookie. A request that could change something must also carry
/// the session's CSRF token in `x-csrf-token`.
pub(super) async fn api_session(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
) -> Option<Result<(), ApiError>> {
    let session = match state.sessions.from_headers(headers).await {
        Ok(session) => session?,
        Err(e) => return Some(Err(e)),
    };
    if matches!(*method, Method::GET | Method::HEAD) {
        return Some(Ok(()));
    }
    let presented = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    Some(if session.csrf_matches(presented) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf_failed",
            "a request signed in by the session cookie must send the session's x-csrf-token",
        ))
    })
}

/// An error page: what went wrong, in words, with the status it deserves.
pub(crate) struct PageError {
    status: StatusCode,
    title: String,
    message: String,
}

impl PageError {
    fn new(status: StatusCode, title: impl Into<String>, message: impl Into<String>) -> PageError {
        PageError {
            status,
            title: title.into(),
            message: message.into(),
        }
    }
}

impl From<ApiError> for PageError {
    fn from(error: ApiError) -> PageError {
        let title = match error.status {
            StatusCode::NOT_FOUND => "error-not-found",
            StatusCode::SERVICE_UNAVAILABLE => "error-busy",
            s if s.is_server_error() => "error-went-wrong",
            _ => "error-not-possible",
        };
        PageError::new(error.status, i18n::t(title), error.message)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let page = view::ErrorPage {
            title: self.title,
            message: self.message,
        };
        (self.status, view::render(&page)).into_response()
    }
}

/// A query string read leniently: one that does not parse is taken as empty (these pages only
/// ever go back to the webhooks page then).
fn lenient_query<T: serde::de::DeserializeOwned + Default>(query: Option<String>) -> T {
    query
        .and_then(|q| serde_urlencoded::from_str(&q).ok())
        .unwrap_or_default()
}

#[derive(serde::Deserialize, Default)]
struct LoginQuery {
    next: Option<String>,
}

/// Where to go after signing in: a page of the admin, never another site, and only a path that
/// can stand in a `Location` header as it is (printable ASCII: the pages' own links are
/// percent-encoded).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with("/admin")
                && !n.starts_with("//")
                && !n.contains('\\')
                && n.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            n.to_owned()
        }
        _ => "/admin".to_owned(),
    }
}

async fn login_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let query: LoginQuery = lenient_query(query);
    let next = safe_next(query.next.as_deref());
    if let Ok(Some(_)) = state.sessions.from_headers(&headers).await {
        return Redirect::to(&next).into_response();
    }
    view::render(&view::LoginPage {
        next,
        error: None,
        token_file: state.token_file.to_string(),
    })
    .into_response()
}

#[derive(serde::Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
    next: Option<String>,
}

/// The sign-in form is small; anything bigger is not one.
const LOGIN_FORM_LIMIT: usize = 16 * 1024;

async fn login(State(state): State<AppState>, request: Request) -> Response {
    let peer = super::client_address(&state, &request);
    match state.rate_limits.sign_in_blocked(&state.store, peer).await {
        Ok(None) => {}
        Ok(Some(wait)) => return too_many_tries(wait),
        Err(e) => return PageError::from(e).into_response(),
    }
    let headers = request.headers().clone();
    let body = match axum::body::to_bytes(request.into_body(), LOGIN_FORM_LIMIT).await {
        Ok(body) => body,
        Err(_) => {
            return PageError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                i18n::t("error-unreadable-form"),
                i18n::t("error-sign-in-form-too-large"),
            )
            .into_response()
        }
    };
    let form: LoginForm = match serde_urlencoded::from_bytes(&body) {
        Ok(form) => form,
        Err(e) => {
            return PageError::new(
                StatusCode::BAD_REQUEST,
                i18n::t("error-unreadable-form"),
                e.to_string(),
            )
            .into_response()
        }
    };
    let next = safe_next(form.next.as_deref());
    let refused = |status: StatusCode, error: &str| {
        (
            status,
            view::render(&view::LoginPage {
                next: next.clone(),
                error: Some(error.to_owned()),
                token_file: state.token_file.to_string(),
            }),
        )
            .into_response()
    };
    match token_role(&state.tokens, form.token.trim()) {
        Some(Role::Admin) => {
            let session = match state.sessions.create().await {
                Ok(session) => session,
                Err(e) => return PageError::from(e).into_response(),
            };
            tracing::info!("admin signed in to the pages");
            let mut response = Redirect::to(&next).into_response();
            if let Ok(cookie) = HeaderValue::from_str(&session::set_cookie(&session.id, &headers)) {
                response.headers_mut().insert(header::SET_COOKIE, cookie);
            }
            response
        }
        Some(Role::Subscribe) => {
            refused(StatusCode::FORBIDDEN, &i18n::t("sign-in-subscribe-token"))
        }
        None if form.token.trim().is_empty() => refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            &i18n::t("sign-in-enter-token"),
        ),
        None => {
            tracing::warn!(peer = %peer, "refused an invalid token at the admin sign-in");
            match state.rate_limits.failed_sign_in(&state.store, peer).await {
                Ok(Ok(())) => refused(StatusCode::UNAUTHORIZED, &i18n::t("sign-in-invalid-token")),
                Ok(Err(wait)) => too_many_tries(wait),
                Err(e) => PageError::from(e).into_response(),
            }
        }
    }
}

fn too_many_tries(wait: std::time::Duration) -> Response {
    super::too_many_requests(wait, |seconds| {
        PageError::new(
            StatusCode::TOO_MANY_REQUESTS,
            i18n::t("error-too-many-tries"),
            i18n::ta("error-too-many-tries-message", "seconds", seconds),
        )
        .into_response()
    })
}

async fn logout(
    State(state): State<AppState>,
    axum::Extension(session): axum::Extension<SessionInfo>,
    _: pages::CheckedForm<serde::de::IgnoredAny>,
) -> Response {
    if let Err(e) = state.sessions.end(&session.id).await {
        return PageError::from(e).into_response();
    }
    let mut response = Redirect::to("/admin/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&session::clear_cookie()).expect("a valid cookie"),
    );
    response
}

const STYLESHEET: &str = include_str!("static/admin.css");
const SCRIPT: &str = include_str!("static/admin.js");

async fn static_file(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (body, content_type) = match file.as_str() {
        "admin.css" => (STYLESHEET, "text/css; charset=utf-8"),
        "admin.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        _ => {
            return PageError::new(
                StatusCode::NOT_FOUND,
                i18n::t("error-not-found"),
                i18n::t("error-no-such-file"),
            )
            .into_response()
        }
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// A redirect after a form, with the banner the next page shows.
async fn redirect_with(
    state: &AppState,
    session: &SessionInfo,
    to: &str,
    flash: Flash,
) -> Response {
    if let Err(e) = state.sessions.set_flash(&session.id, flash).await {
        // The change is made; only its banner is lost, which the next page shows no sign of.
        tracing::warn!("a banner for the admin pages was not kept: {}", e.message);
    }
    Redirect::to(to).into_response()
}
