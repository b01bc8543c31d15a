//! The handlers of the admin pages. Each reads through the API's own functions, renders a
//! template, and answers a form with a redirect and a banner (or, when the form is wrong, the same
//! page again with a warning and what was typed).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::i18n::{t, ta, ta2, tn};
use super::session::{Flash, SessionInfo};
use super::view::{self, HookQuery, HookRow, NewHookForm};
use super::{redirect_with, PageError};
use crate::http::backfills;
use crate::http::filters::{self, FilterTestOut};
use crate::http::hooks::{CreateHookIn, HookOut, UpdateHookIn};
use crate::http::test_sends;
use crate::http::{
    blocking, catalogue, history, hooks, nodes, parse_page, scripts, ApiError, AppState,
};
use crate::store::{HookFilter, HookState, ScopeName};

/// How many hooks the index lists; past it, the API pages through them.
const MAX_LISTED_HOOKS: usize = 1000;
/// How long a rotated secret keeps signing beside the new one, from the pages.
const ROTATION_GRACE_SECS: u64 = 24 * 3600;

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

fn is_client_error(error: &ApiError) -> bool {
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

fn non_empty(text: &str) -> Option<String> {
    Some(text.trim().to_owned()).filter(|t| !t.is_empty())
}

pub async fn create_hook(
    State(state): State<AppState>,
    Extension(session): Extension<SessionInfo>,
    body: Bytes,
) -> Response {
    let form: NewHookForm = match checked_form(&session, &body) {
        Ok(form) => form,
        Err(e) => return e.into_response(),
    };
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
struct Typed {
    endpoint: Option<String>,
    filter: Option<String>,
    filter_test: Option<FilterTestOut>,
    backfill_query: Option<String>,
}

async fn hook_page(
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
    let grid = hooks::grid_of(state, id.clone()).await?;
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
        backfill_triggers: hook
            .events
            .iter()
            .filter(|e| !e.contains('.'))
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

#[derive(Deserialize)]
struct RecoverForm {
    #[serde(default)]
    since: String,
    include_discarded: Option<String>,
}

/// "Retry failed events since": recovery after the endpoint's outage.
pub async fn retry_failed(
    State(state): State<AppState>,
    Extension(session): Extension<SessionInfo>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let form: RecoverForm = match checked_form(&session, &body) {
        Ok(form) => form,
        Err(e) => return e.into_response(),
    };
    // A `datetime-local` field sends no zone: the form says its times are UTC.
    let since = form.since.trim();
    let since = if since.len() == 16 || since.len() == 19 {
        format!("{since}{}Z", if since.len() == 16 { ":00" } else { "" })
    } else {
        since.to_owned()
    };
    let back = format!("/admin/hooks/{id}#recover");
    let include_discarded = form.include_discarded.is_some();
    let flash = match history::retry_failed_since(&state, id, Some(since), include_discarded).await
    {
        Ok(0) => Flash::warning(t("banner-nothing-to-retry")),
        Ok(n) => Flash::success(tn("banner-retried-since", n)),
        Err(e) if is_client_error(&e) && e.status != StatusCode::NOT_FOUND => {
            Flash::warning(ta("banner-nothing-retried", "reason", &e.message))
        }
        Err(e) => return PageError::from(e).into_response(),
    };
    redirect_with(&state, &session, &back, flash.at("recover")).await
}

#[derive(Deserialize)]
struct EndpointForm {
    #[serde(default)]
    target_url: String,
    #[serde(default)]
    authorization: String,
    remove_authorization: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    rate_limit: String,
}

pub async fn update_hook(
    State(state): State<AppState>,
    Extension(session): Extension<SessionInfo>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let form: EndpointForm = match checked_form(&session, &body) {
        Ok(form) => form,
        Err(e) => return e.into_response(),
    };
    let authorization = if form.remove_authorization.is_some() {
        Some(None)
    } else {
        non_empty(&form.authorization).map(Some)
    };
    let rate_limit = match form.rate_limit.trim() {
        "" => None,
        text => match text.replace(',', ".").parse::<f64>() {
            Ok(limit) => Some(limit),
            // Out of range (below) says what it must be.
            Err(_) => Some(f64::NAN),
        },
    };
    let input = UpdateHookIn {
        target_url: Some(form.target_url.clone()),
        authorization,
        description: Some(form.description.trim().to_owned()),
        enabled: None,
        company_id: None,
        project_id: None,
        filter: None,
        rate_limit_per_second: Some(rate_limit),
    };
    match hooks::update_hook(&state, id.clone(), input).await {
        Ok(_) => {
            redirect_with(
                &state,
                &session,
                &format!("/admin/hooks/{id}"),
                Flash::success(t("banner-endpoint-saved")),
            )
            .await
        }
        Err(e) if is_client_error(&e) && e.status != StatusCode::NOT_FOUND => {
            let flash = Flash::warning(ta("banner-endpoint-not-saved", "reason", &e.message));
            let page = hook_page(
                &state,
                &session,
                id,
                HookQuery::default(),
                Some(flash),
                Typed {
                    endpoint: Some(form.target_url),
                    ..Typed::default()
                },
            )
            .await;
            match page {
                Ok(page) => (StatusCode::UNPROCESSABLE_ENTITY, view::render(&page)).into_response(),
                Err(e) => e.into_response(),
            }
        }
        Err(e) => PageError::from(e).into_response(),
    }
}

#[derive(Deserialize)]
struct FilterForm {
    #[serde(default)]
    filter: String,
    /// `try` tries it on the hook's samples and saves nothing; anything else saves it.
    #[serde(default)]
    action: String,
}

/// The filter form: "Save filter" saves it (empty removes it); "Try on samples" shows, on the
/// page, what it makes of the hook's sample payloads, with the typed filter kept in the field.
pub async fn filter(
    State(state): State<AppState>,
    Extension(session): Extension<SessionInfo>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let form: FilterForm = match checked_form(&session, &body) {
        Ok(form) => form,
        Err(e) => return e.into_response(),
    };
    let typed = non_empty(&form.filter);
    let (outcome, tried) = if form.action == "try" {
        match filters::test_filter(&state, id.clone(), typed.clone()).await {
            Ok(out) => (Ok(()), Some(out)),
            Err(e) => (Err(e), None),
        }
    } else {
        let input = UpdateHookIn {
            target_url: None,
            authorization: None,
            description: None,
            enabled: None,
            company_id: None,
            project_id: None,
            filter: Some(typed.clone()),
            rate_limit_per_second: None,
        };
        match hooks::update_hook(&state, id.clone(), input).await {
            Ok(_) => {
                let message = if typed.is_some() {
                    t("banner-filter-saved")
                } else {
                    t("banner-filter-removed")
                };
                return redirect_with(
                    &state,
                    &session,
                    &format!("/admin/hooks/{id}#filter"),
                    Flash::success(message).at("filter"),
                )
                .await;
            }
            Err(e) => (Err(e), None),
        }
    };
    let (status, flash) = match outcome {
        Ok(()) => (StatusCode::OK, None),
        Err(e) if is_client_error(&e) && e.status != StatusCode::NOT_FOUND => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some(Flash::warning(format!("{}.", capitalized(&e.message))).at("filter")),
        ),
        Err(e) => return PageError::from(e).into_response(),
    };
    let typed = Typed {
        filter: Some(form.filter),
        filter_test: tried,
        ..Typed::default()
    };
    match hook_page(&state, &session, id, HookQuery::default(), flash, typed).await {
        Ok(page) => (status, view::render(&page)).into_response(),
        Err(e) => e.into_response(),
    }
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

#[derive(Deserialize)]
struct BackfillForm {
    #[serde(default)]
    event: String,
    #[serde(default)]
    query: String,
}

/// "Start backfill": queues the rows the query returns as events for this hook; the page follows
/// its progress.
pub async fn start_backfill(
    State(state): State<AppState>,
    Extension(session): Extension<SessionInfo>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let form: BackfillForm = match checked_form(&session, &body) {
        Ok(form) => form,
        Err(e) => return e.into_response(),
    };
    let started = backfills::start_backfill(
        &state,
        id.clone(),
        form.event.trim().to_owned(),
        crate::backfill::BackfillRows::Query(form.query.clone()),
    )
    .await;
    match started {
        Ok(backfill) => {
            redirect_with(
                &state,
                &session,
                &format!("/admin/hooks/{id}#backfill"),
                Flash::success(ta2(
                    "banner-backfill-started",
                    "count",
                    backfill.rows,
                    "event",
                    &backfill.event,
                ))
                .at("backfill"),
            )
            .await
        }
        Err(e) if is_client_error(&e) && e.status != StatusCode::NOT_FOUND => {
            let flash = Flash::warning(ta("banner-backfill-not-started", "reason", &e.message))
                .at("backfill");
            let typed = Typed {
                backfill_query: Some(form.query),
                ..Typed::default()
            };
            match hook_page(
                &state,
                &session,
                id,
                HookQuery::default(),
                Some(flash),
                typed,
            )
            .await
            {
                Ok(page) => (StatusCode::UNPROCESSABLE_ENTITY, view::render(&page)).into_response(),
                Err(e) => e.into_response(),
            }
        }
        Err(e) => PageError::from(e).into_response(),
    }
}

/// "Cancel" on a running backfill.
pub async fn cancel_backfill(
    State(state): State<AppState>,
    Extension(session): Extension<SessionInfo>,
    Path((id, backfill_id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    if let Err(e) = checked_form::<serde::de::IgnoredAny>(&session, &body) {
        return e.into_response();
    }
    let flash = match backfills::cancel_backfill(&state, id.clone(), backfill_id).await {
        Ok(backfill) => Flash::success(ta2(
            "banner-backfill-cancelled",
            "done",
            backfill.done,
            "count",
            backfill.rows,
        )),
        Err(e) if is_client_error(&e) && e.status != StatusCode::NOT_FOUND => {
            Flash::warning(ta("banner-not-cancelled", "reason", &e.message))
        }
        Err(e) => return PageError::from(e).into_response(),
    };
    redirect_with(
        &state,
        &session,
        &format!("/admin/hooks/{id}#backfill"),
        flash.at("backfill"),
    )
    .await
}

#[derive(Deserialize)]
struct TestSendForm {
    #[serde(default)]
    event: String,
}

/// "Send test event": sends one sample to the hook and comes back to the page with what the
/// endpoint answered.
pub async fn send_test(
    State(state): State<AppState>,
    Extension(session): Extension<SessionInfo>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let form: TestSendForm = match checked_form(&session, &body) {
        Ok(form) => form,
        Err(e) => return e.into_response(),
    };
    let flash = match test_sends::send_test_event(&state, id.clone(), non_empty(&form.event)).await
    {
        Ok(sent) => match sent.attempt {
            Some(attempt) => {
                let answer = match (attempt.response_status, &attempt.error) {
                    (Some(code), _) => format!("HTTP {code}"),
                    (None, Some(error)) => error.clone(),
                    (None, None) => view::outcome_label(&attempt.outcome).to_owned(),
                };
                let mut message = super::i18n::message(
                    "banner-test-sent",
                    &[
                        ("event", sent.event.clone()),
                        ("answer", answer),
                        ("duration", view::duration(attempt.duration_ms)),
                    ],
                );
                if let Some(body) = attempt.response_body.filter(|b| !b.trim().is_empty()) {
                    message.push(' ');
                    message.push_str(&ta(
                        "banner-test-answered",
                        "body",
                        view::preview_text(&body),
                    ));
                }
                if attempt.outcome == "success" {
                    Flash::success(message)
                } else {
                    Flash::warning(format!("{message} {}", t("banner-test-retried")))
                }
            }
            None => Flash::warning(ta("banner-test-no-answer-yet", "event", &sent.event)),
        },
        Err(e) if is_client_error(&e) && e.status != StatusCode::NOT_FOUND => {
            Flash::warning(ta("banner-test-not-sent", "reason", &e.message))
        }
        Err(e) => return PageError::from(e).into_response(),
    };
    redirect_with(
        &state,
        &session,
        &format!("/admin/hooks/{id}#overview"),
        flash.at("test"),
    )
    .await
}

#[derive(Deserialize)]
struct StatusForm {
    enabled: String,
}

pub async fn set_status(
    State(state): State<AppState>,
    Extension(session): Extension<SessionInfo>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let form: StatusForm = match checked_form(&session, &body) {
        Ok(form) => form,
        Err(e) => return e.into_response(),
    };
    let enabled = form.enabled == "true";
    // When it started failing, read before enabling clears it: the recovery form starts there.
    let failing_since = match hooks::hook_out(&state, id.clone()).await {
        Ok(hook) if !hook.enabled => hook.failing_since,
        Ok(_) => None,
        Err(e) => return PageError::from(e).into_response(),
    };
    let input = UpdateHookIn {
        target_url: None,
        authorization: None,
        description: None,
        enabled: Some(enabled),
        company_id: None,
        project_id: None,
        filter: None,
        rate_limit_per_second: None,
    };
    match hooks::update_hook(&state, id.clone(), input).await {
        Ok(_) if enabled => {
            let (to, message) = match failing_since {
                Some(since) => (
                    format!(
                        "/admin/hooks/{id}?{}#recover",
                        serde_urlencoded::to_string([("recover_since", since.as_str())])
                            .unwrap_or_default()
                    ),
                    t("banner-enabled-recover-since"),
                ),
                None => (format!("/admin/hooks/{id}"), t("banner-enabled-recover")),
            };
            redirect_with(&state, &session, &to, Flash::success(message)).await
        }
        Ok(_) => {
            redirect_with(
                &state,
                &session,
                &format!("/admin/hooks/{id}"),
                Flash::success(t("banner-disabled")),
            )
            .await
        }
        Err(e) => PageError::from(e).into_response(),
    }
}

pub async fn rotate_secret(
    State(state): State<AppState>,
    Extension(session): Extension<SessionInfo>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if let Err(e) = check_csrf(&session, &body) {
        return e.into_response();
    }
    match hooks::rotate_hook_secret(&state, id.clone(), ROTATION_GRACE_SECS).await {
        Ok(hook) => {
            redirect_with(
                &state,
                &session,
                &format!("/admin/hooks/{id}"),
                Flash {
                    secret: Some(hook.secret.clone()),
                    ..Flash::success(t("banner-secret-rotated"))
                },
            )
            .await
        }
        Err(e) => PageError::from(e).into_response(),
    }
}

pub async fn delete_hook(
    State(state): State<AppState>,
    Extension(session): Extension<SessionInfo>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if let Err(e) = check_csrf(&session, &body) {
        return e.into_response();
    }
    match hooks::delete_hook(&state, &id).await {
        Ok(()) => {
            redirect_with(
                &state,
                &session,
                "/admin",
                Flash::success(t("banner-hook-deleted")),
            )
            .await
        }
        Err(e) => PageError::from(e).into_response(),
    }
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

#[derive(Deserialize)]
struct RetryForm {
    #[serde(default)]
    return_to: String,
}

pub async fn retry_event(
    State(state): State<AppState>,
    Extension(session): Extension<SessionInfo>,
    Path((id, event_id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let form: RetryForm = match checked_form(&session, &body) {
        Ok(form) => form,
        Err(e) => return e.into_response(),
    };
    let filtered_by = listed_status(&form.return_to);
    let back = back_to_events(&id, form.return_to);
    let flash = match history::retry_hook_event(&state, id, event_id.clone()).await {
        Ok(_) => {
            let mut message = ta("banner-event-retried", "event", &event_id);
            if let Some(status) = filtered_by.filter(|s| s != "pending" && s != "delivering") {
                message.push(' ');
                message.push_str(&ta(
                    "banner-retried-leaves-filter",
                    "status",
                    view::status_label(&status),
                ));
            }
            Flash::success(message)
        }
        Err(e) if is_client_error(&e) => {
            Flash::warning(ta("banner-not-retried", "reason", &e.message))
        }
        Err(e) => return PageError::from(e).into_response(),
    };
    redirect_with(&state, &session, &back, flash.at("events")).await
}

pub async fn discard_event(
    State(state): State<AppState>,
    Extension(session): Extension<SessionInfo>,
    Path((id, event_id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let form: RetryForm = match checked_form(&session, &body) {
        Ok(form) => form,
        Err(e) => return e.into_response(),
    };
    let filtered_by = listed_status(&form.return_to);
    let back = back_to_events(&id, form.return_to);
    let flash = match history::discard_hook_event(&state, id, event_id.clone()).await {
        Ok(_) => {
            let mut message = ta("banner-event-discarded", "event", &event_id);
            if filtered_by.is_some_and(|s| s != "discarded") {
                message.push(' ');
                message.push_str(&t("banner-discarded-leaves-filter"));
            }
            Flash::success(message)
        }
        Err(e) if is_client_error(&e) => {
            Flash::warning(ta("banner-not-discarded", "reason", &e.message))
        }
        Err(e) => return PageError::from(e).into_response(),
    };
    redirect_with(&state, &session, &back, flash.at("events")).await
}

/// The status the events list was filtered by, from the form's `return_to`.
fn listed_status(return_to: &str) -> Option<String> {
    let query = return_to.split_once('?')?.1.split('#').next()?;
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .ok()?
        .into_iter()
        .find(|(k, v)| k == "status" && !v.is_empty())
        .map(|(_, v)| v)
}

/// Where a form of the events list goes back to: the list as it was (its filters), on this hook's
/// page only.
fn back_to_events(id: &str, return_to: String) -> String {
    let hook_page = format!("/admin/hooks/{id}");
    if return_to.starts_with(&format!("{hook_page}?"))
        || return_to.starts_with(&format!("{hook_page}#"))
    {
        return_to
    } else {
        format!("{hook_page}#events")
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
