//! The admin pages themselves: the webhooks page (and its "new hook" form), a hook's page, the
//! deliveries log and one delivery, the scripts and the API reference. Each reads through the
//! API's own functions and renders a template; the forms of a hook's page are `hook_actions.rs`.
//! Here too the forms' common checks (CSRF, UTF-8) and the hook page with what a refused form held.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::i18n::{t, ta};
use super::session::{Flash, SessionInfo};
use super::view::{self, HookQuery, HookRow, NewHookForm};
use super::{redirect_with, PageError};
use crate::http::filters::FilterTestOut;
use crate::http::hooks::{CreateHookIn, HookOut};
use crate::http::{backfills, grid};
use crate::http::{
    blocking, catalogue, history, hooks, nodes, parse_page, scripts, ApiError, AppState,
};
use crate::store::{HookFilter, HookState, ScopeName};

/// How many hooks the index lists; past it, the API pages through them.
const MAX_LISTED_HOOKS: usize = 1000;

fn parse_form<T: DeserializeOwned>(body: &[u8]) -> Result<T, PageError> {
    check_form_text(body)?;
    serde_urlencoded::from_bytes(body).map_err(|e| {
        PageError::new(
            StatusCode::BAD_REQUEST,
            t("error-unreadable-form"),
            e.to_string(),
        )
    })
}

/// A form's fields must decode to UTF-8 text: serde_urlencoded puts U+FFFD where they do not, which
/// would store something the person never typed (the API refuses such text as invalid JSON).
pub(super) fn check_form_text(body: &[u8]) -> Result<(), PageError> {
    for field in body.split(|b| *b == b'&') {
        let spaced: Vec<u8> = field
            .iter()
            .map(|b| if *b == b'+' { b' ' } else { *b })
            .collect();
        let decoded: Vec<u8> = percent_encoding::percent_decode(&spaced).collect();
        if std::str::from_utf8(&decoded).is_err() {
            return Err(PageError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                t("error-unreadable-form"),
                t("error-form-not-utf8"),
            ));
        }
    }
    Ok(())
}

/// Refuses a form that does not carry the session's CSRF token.
pub(super) fn check_csrf(session: &SessionInfo, body: &[u8]) -> Result<(), PageError> {
    let fields: Vec<(String, String)> = parse_form(body)?;
    let presented = fields
        .iter()
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    if session.csrf_matches(presented) {
        Ok(())
    } else {
        Err(PageError::new(
            StatusCode::FORBIDDEN,
            t("error-form-expired"),
            t("error-form-expired-message"),
        ))
    }
}

/// A form of the signed-in pages, as its handler takes it: its fields, once the session's CSRF
/// token is found among them (else the "form expired" page). The last argument of a handler, since
/// it reads the body.
pub(super) struct CheckedForm<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequest<S> for CheckedForm<T> {
    type Rejection = Response;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Response> {
        let session = request
            .extensions()
            .get::<SessionInfo>()
            .cloned()
            .ok_or_else(|| {
                PageError::new(
                    StatusCode::UNAUTHORIZED,
                    t("error-signed-out"),
                    t("error-signed-out-message"),
                )
                .into_response()
            })?;
        let body = Bytes::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        checked_form(&session, &body)
            .map(CheckedForm)
            .map_err(IntoResponse::into_response)
    }
}

/// A form's fields, once its CSRF token is checked.
fn checked_form<T: DeserializeOwned>(session: &SessionInfo, body: &[u8]) -> Result<T, PageError> {
    check_csrf(session, body)?;
    parse_form(body)
}

/// The companies and projects of the application, to name scopes and offer them.
async fn directory(state: &AppState) -> Result<(Vec<ScopeName>, Vec<ScopeName>), ApiError> {
    let store = state.store.clone();
    blocking(move || {
        let db = store.script_db().map_err(ApiError::from)?;
        Ok((db.companies(), db.projects()))
    })
    .await
}

pub(super) fn is_client_error(error: &ApiError) -> bool {
    error.status.is_client_error()
}

/// The Webhooks page's search: the API's filters.
#[derive(serde::Deserialize, Default, Clone)]
pub struct HookSearch {
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub event: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub cursor: String,
}

impl HookSearch {
    fn is_empty(&self) -> bool {
        self.q.trim().is_empty()
            && self.event.trim().is_empty()
            && self.status.trim().is_empty()
            && self.cursor.trim().is_empty()
    }

    fn filter(&self) -> HookFilter {
        HookFilter {
            search: non_empty(&self.q),
            event: non_empty(&self.event),
            state: HookState::parse(self.status.trim()),
            ..HookFilter::default()
        }
    }

    /// This search's link to the page after `cursor`.
    fn link_after(&self, cursor: &str) -> String {
        let query = serde_urlencoded::to_string([
            ("q", self.q.trim()),
            ("event", self.event.trim()),
            ("status", self.status.trim()),
            ("cursor", cursor),
        ])
        .unwrap_or_default();
        format!("/admin?{query}")
    }
}

pub async fn index(
    State(state): State<AppState>,
    Extension(session): Extension<SessionInfo>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let flash = state.sessions.take_flash(&session.id).await;
    let search: HookSearch = query
        .and_then(|q| serde_urlencoded::from_str(&q).ok())
        .unwrap_or_default();
    match index_page(&state, &session, NewHookForm::default(), flash, search).await {
        Ok(page) => view::render(&page),
        Err(e) => e.into_response(),
    }
}

async fn index_page(
    state: &AppState,
    session: &SessionInfo,
    form: NewHookForm,
    flash: Option<Flash>,
    search: HookSearch,
) -> Result<view::IndexPage, PageError> {
    let total = state
        .on_store(|store| store.count_hooks(&HookFilter::default()))
        .await?;
    let (companies, projects) = directory(state).await?;
    let row = |hook: HookOut| HookRow {
        scope: view::scope_label(&hook, &companies, &projects),
        hook,
    };
    if !search.is_empty() || total > MAX_LISTED_HOOKS as u64 {
        // Too many to group on one page, or a search: the hooks found, a page at a time.
        let cursor = non_empty(&search.cursor);
        let found =
            hooks::hooks_page(state, search.filter(), cursor, crate::http::DEFAULT_PAGE).await?;
        let found = view::FoundHooks {
            total: found.total,
            next: found.next_cursor.as_deref().map(|c| search.link_after(c)),
            rows: found.hooks.into_iter().map(row).collect(),
        };
        return Ok(view::IndexPage {
            csrf: session.csrf.clone(),
            flash,
            total,
            search,
            found: Some(found),
            company_hooks: Vec::new(),
            project_groups: Vec::new(),
            subscriptions: Vec::new(),
            form,
            companies,
            projects,
        });
    }
    let mut hooks = Vec::new();
    let mut cursor = None;
    loop {
        let page =
            hooks::hooks_page(state, HookFilter::default(), cursor, crate::http::MAX_PAGE).await?;
        hooks.extend(page.hooks);
        cursor = page.next_cursor;
        if cursor.is_none() || hooks.len() >= MAX_LISTED_HOOKS {
            break;
        }
    }
    let mut page = view::IndexPage {
        csrf: session.csrf.clone(),
        flash,
        total,
        search,
        found: None,
        company_hooks: Vec::new(),
        project_groups: Vec::new(),
        subscriptions: Vec::new(),
        form,
        companies: Vec::new(),
        projects: Vec::new(),
    };
    for hook in hooks {
        let row = row(hook);
        match (row.hook.scope, row.hook.project_id) {
            ("company", _) => page.company_hooks.push(row),
            ("project", Some(project_id)) => {
                match page
                    .project_groups
                    .iter_mut()
                    .find(|g| g.project_id == project_id)
                {
                    Some(group) => group.rows.push(row),
                    None => page.project_groups.push(view::ProjectHooks {
                        project_id,
                        label: row.scope.clone(),
                        rows: vec![row],
                    }),
                }
            }
            _ => page.subscriptions.push(row),
        }
    }
    page.project_groups.sort_by_key(|g| g.project_id);
    page.companies = companies;
    page.projects = projects;
    Ok(page)
}

/// `company:1` or `project:10`, as the scope field sends it.
fn parse_scope(text: &str) -> Option<(Option<i64>, Option<i64>)> {
    let (kind, id) = text.trim().split_once(':')?;
    let id = id.trim().parse::<i64>().ok()?;
    match kind {
        "company" => Some((Some(id), None)),
        "project" => Some((None, Some(id))),
        _ => None,
    }
}

pub(super) fn non_empty(text: &str) -> Option<String> {
    Some(text.trim().to_owned()).filter(|t| !t.is_empty())
}

pub async fn create_hook(
    State(state): State<AppState>,
    Extension(session): Extension<SessionInfo>,
    CheckedForm(form): CheckedForm<NewHookForm>,
) -> Response {
    let result = match parse_scope(&form.scope) {
        None => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_scope",
            t("banner-choose-scope"),
        )),
        Some((company_id, project_id)) => {
            let input = CreateHookIn {
                target_url: Some(form.target_url.clone()),
                company_id,
                project_id,
                authorization: non_empty(&form.authorization),
                description: non_empty(&form.description),
                events: Vec::new(),
                enabled: None,
                filter: None,
                rate_limit_per_second: None,
            };
            hooks::create_hook(&state, input).await
        }
    };
    match result {
        Ok(hook) => {
            redirect_with(
                &state,
                &session,
                &format!("/admin/hooks/{}", hook.id),
                Flash {
                    secret: Some(hook.secret.clone()),
                    ..Flash::success(t("banner-endpoint-created"))
                },
            )
            .await
        }
        Err(e) if is_client_error(&e) => {
            let flash = Flash::warning(ta("banner-endpoint-not-saved", "reason", &e.message));
            match index_page(&state, &session, form, Some(flash), HookSearch::default()).await {
                Ok(page) => (StatusCode::UNPROCESSABLE_ENTITY, view::render(&page)).into_response(),
                Err(e) => e.into_response(),
            }
        }
        Err(e) => PageError::from(e).into_response(),
    }
}

pub async fn hook(
    State(state): State<AppState>,
    Extension(session): Extension<SessionInfo>,
    Path(id): Path<String>,
    Query(query): Query<HookQuery>,
) -> Response {
    let flash = state.sessions.take_flash(&session.id).await;
    match hook_page(&state, &session, id, query, flash, Typed::default()).await {
        Ok(page) => view::render(&page),
        Err(e) => e.into_response(),
    }
}

/// What the hook page shows in place of the hook's own values: what was typed into a form that
/// was refused or tried, and what trying a filter found.
#[derive(Default)]
pub(super) struct Typed {
    pub(super) endpoint: Option<String>,
    pub(super) filter: Option<String>,
    pub(super) filter_test: Option<FilterTestOut>,
    pub(super) backfill_query: Option<String>,
}

pub(super) async fn hook_page(
    state: &AppState,
    session: &SessionInfo,
    id: String,
    query: HookQuery,
    flash: Option<Flash>,
    typed: Typed,
) -> Result<view::HookPage, PageError> {
    let hook = hooks::hook_out(state, id.clone()).await?;
    let only_failures = query.only_failures.as_deref() == Some("true");
    let filter = history::event_filter(
        query.status.as_deref(),
        query.resource.as_deref(),
        query.event_type.as_deref(),
    )?;
    let (events_cursor, _) = parse_page(query.events_cursor.as_deref(), None)?;
    let summary = history::hook_summary(state, id.clone()).await?;
    let grid = grid::grid_of(state, id.clone()).await?;
    let deliveries = history::deliveries_page(
        state,
        id.clone(),
        only_failures,
        None,
        crate::http::DEFAULT_PAGE,
    )
    .await?;
    let events = history::events_page(
        state,
        id.clone(),
        filter,
        events_cursor,
        crate::http::DEFAULT_PAGE,
    )
    .await?;
    let (companies, projects) = directory(state).await?;
    let text = |v: &Option<String>| v.clone().unwrap_or_default().trim().to_owned();
    let (status_filter, resource_filter, event_type_filter) = (
        text(&query.status),
        text(&query.resource),
        text(&query.event_type),
    );
    let filters = |cursor: Option<&str>| {
        let mut pairs = vec![
            ("status", status_filter.as_str()),
            ("resource", resource_filter.as_str()),
            ("event_type", event_type_filter.as_str()),
        ];
        if let Some(c) = cursor {
            pairs.push(("events_cursor", c));
        }
        pairs.retain(|(_, v)| !v.is_empty());
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    };
    let events_more_href = events
        .next_cursor
        .as_deref()
        .map(|c| format!("/admin/hooks/{id}?{}#events", filters(Some(c))));
    let return_to = format!(
        "/admin/hooks/{id}?{}#events",
        filters(query.events_cursor.as_deref())
    );
    Ok(view::HookPage {
        csrf: session.csrf.clone(),
        flash,
        scope: view::scope_label(&hook, &companies, &projects),
        endpoint_value: typed.endpoint.unwrap_or_else(|| hook.target_url.clone()),
        filter_value: typed
            .filter
            .unwrap_or_else(|| hook.filter.clone().unwrap_or_default()),
        filter_test: typed.filter_test,
        backfills: backfills::hook_backfills(state, id.clone())
            .await?
            .backfills,
        // A resource event's deletes cannot be backfilled: the rows exist.
        backfill_triggers: hook
            .events
            .iter()
            .filter(|e| !e.ends_with(".delete"))
            .cloned()
            .collect(),
        backfill_query: typed.backfill_query.unwrap_or_default(),
        hook,
        hook_id: id,
        summary,
        grid,
        deliveries,
        only_failures,
        events,
        status_filter,
        resource_filter,
        event_type_filter,
        events_cursor: query.events_cursor.filter(|c| !c.trim().is_empty()),
        events_more_href,
        return_to,
        recover_since: recover_since_value(query.recover_since.as_deref()),
    })
}

/// `2026-11-24T08:00:00` (UTC, for a `datetime-local` field): the time asked for, or a day ago.
fn recover_since_value(asked: Option<&str>) -> String {
    let ms = asked
        .and_then(|t| crate::clock::parse_rfc3339_ms(t.trim()))
        .unwrap_or_else(|| crate::clock::now_ms() - 24 * 3600 * 1000);
    crate::clock::rfc3339_ms(ms).chars().take(19).collect()
}

#[derive(Deserialize, Default)]
pub struct DeliveriesQuery {
    cursor: Option<String>,
    only_failures: Option<String>,
    fragment: Option<String>,
}

pub async fn deliveries(
    State(state): State<AppState>,
    Extension(session): Extension<SessionInfo>,
    Path(id): Path<String>,
    Query(query): Query<DeliveriesQuery>,
) -> Response {
    let only_failures = query.only_failures.as_deref() == Some("true");
    let page = async {
        let (cursor, _) = parse_page(query.cursor.as_deref(), None)?;
        history::deliveries_page(
            &state,
            id.clone(),
            only_failures,
            cursor,
            crate::http::DEFAULT_PAGE,
        )
        .await
    }
    .await;
    let deliveries = match page {
        Ok(page) => page,
        Err(e) => return PageError::from(e).into_response(),
    };
    if query.fragment.as_deref() == Some("1") {
        view::render(&view::DeliveriesFragment {
            hook_id: id,
            deliveries,
            only_failures,
        })
    } else {
        view::render(&view::DeliveriesPage {
            csrf: session.csrf,
            hook_id: id,
            deliveries,
            only_failures,
        })
    }
}

#[derive(Deserialize, Default)]
pub struct FragmentQuery {
    fragment: Option<String>,
}

pub async fn delivery(
    State(state): State<AppState>,
    Extension(session): Extension<SessionInfo>,
    Path((id, seq)): Path<(String, String)>,
    Query(query): Query<FragmentQuery>,
) -> Response {
    let detail = match history::delivery_detail(&state, id.clone(), seq).await {
        Ok(detail) => detail,
        Err(e) => return PageError::from(e).into_response(),
    };
    if query.fragment.as_deref() == Some("1") {
        view::render(&view::DeliveryFragment { detail })
    } else {
        view::render(&view::DeliveryDetailPage {
            csrf: session.csrf,
            hook_id: id,
            detail,
        })
    }
}

pub async fn scripts(
    State(state): State<AppState>,
    Extension(session): Extension<SessionInfo>,
) -> Response {
    let page = async {
        Ok::<_, ApiError>(view::ScriptsPage {
            csrf: session.csrf.clone(),
            scripts: scripts::scripts_overview(&state).await?,
            catalogue: catalogue::catalogue(&state, true).await?,
            nodes: nodes::nodes_overview(&state).await?,
        })
    }
    .await;
    match page {
        Ok(page) => view::render(&page),
        Err(e) => PageError::from(e).into_response(),
    }
}

/// The API reference: the OpenAPI document as a page, served from the binary.
pub async fn api_reference(Extension(session): Extension<SessionInfo>) -> Response {
    let document: serde_json::Value = match serde_json::to_value(crate::http::openapi::document()) {
        Ok(document) => document,
        Err(e) => return PageError::from(ApiError::internal(e)).into_response(),
    };
    view::render(&view::ApiReferencePage::of(session.csrf.clone(), &document))
}

pub async fn not_found() -> Response {
    PageError::new(
        StatusCode::NOT_FOUND,
        t("error-not-found"),
        t("error-no-such-page"),
    )
    .into_response()
}
