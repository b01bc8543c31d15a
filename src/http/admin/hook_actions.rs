//! The forms of a hook's page that change something (the endpoint, the filter, a backfill, a test
//! send, enable and disable, the secret, deletion, an event's retry or discard, the recovery after
//! an outage). Each calls the API's own function and answers with a redirect to the part of the
//! page it came from and a banner there; a form that is refused shows the page again with what
//! was typed (`pages::hook_page`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Deserialize;

use super::i18n::{t, ta, ta2, tn};
use super::pages::{hook_page, is_client_error, non_empty, CheckedForm, Typed};
use super::session::{Flash, SessionInfo};
use super::view::{self, HookQuery};
use super::{redirect_with, PageError};
use crate::http::backfills;
use crate::http::filters;
use crate::http::hooks::UpdateHookIn;
use crate::http::test_sends;
use crate::http::{history, hooks, AppState};

/// How long a rotated secret keeps signing beside the new one, from the pages.
const ROTATION_GRACE_SECS: u64 = 24 * 3600;

#[derive(Deserialize)]
pub(super) struct RecoverForm {
    #[serde(default)]
    since: String,
    include_discarded: Option<String>,
}

/// "Retry failed events since": recovery after the endpoint's outage.
pub(super) async fn retry_failed(
    State(state): State<AppState>,
    Extension(session): Extension<SessionInfo>,
    Path(id): Path<String>,
    CheckedForm(form): CheckedForm<RecoverForm>,
) -> Response {
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
pub(super) struct EndpointForm {
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

pub(super) async fn update_hook(
    State(state): State<AppState>,
    Extension(session): Extension<SessionInfo>,
    Path(id): Path<String>,
    CheckedForm(form): CheckedForm<EndpointForm>,
) -> Response {
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
pub(super) struct FilterForm {
    #[serde(default)]
    filter: String,
    /// `try` tries it on the hook's samples and saves nothing; anything else saves it.
    #[serde(default)]
    action: String,
}

/// The filter form: "Save filter" saves it (empty removes it); "Try on samples" shows, on the
/// page, what it makes of the hook's sample payloads, with the typed filter kept in the field.
pub(super) async fn filter(
    State(state): State<AppState>,
    Extension(session): Extension<SessionInfo>,
    Path(id): Path<String>,
    CheckedForm(form): CheckedForm<FilterForm>,
) -> Response {
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
pub(super) struct BackfillForm {
    #[serde(default)]
    event: String,
    #[serde(default)]
    query: String,
}

/// "Start backfill": queues the rows the query returns as events for this hook; the page follows
/// its progress.
pub(super) async fn start_backfill(
    State(state): State<AppState>,
    Extension(session): Extension<SessionInfo>,
    Path(id): Path<String>,
    CheckedForm(form): CheckedForm<BackfillForm>,
) -> Response {
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
pub(super) async fn cancel_backfill(
    State(state): State<AppState>,
    Extension(session): Extension<SessionInfo>,
    Path((id, backfill_id)): Path<(String, String)>,
    _: CheckedForm<serde::de::IgnoredAny>,
) -> Response {
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
pub(super) struct TestSendForm {
    #[serde(default)]
    event: String,
}

/// "Send test event": sends one sample to the hook and comes back to the page with what the
/// endpoint answered.
pub(super) async fn send_test(
    State(state): State<AppState>,
    Extension(session): Extension<SessionInfo>,
    Path(id): Path<String>,
    CheckedForm(form): CheckedForm<TestSendForm>,
) -> Response {
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
pub(super) struct StatusForm {
    enabled: String,
}

pub(super) async fn set_status(
    State(state): State<AppState>,
    Extension(session): Extension<SessionInfo>,
    Path(id): Path<String>,
    CheckedForm(form): CheckedForm<StatusForm>,
) -> Response {
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

pub(super) async fn rotate_secret(
    State(state): State<AppState>,
    Extension(session): Extension<SessionInfo>,
    Path(id): Path<String>,
    _: CheckedForm<serde::de::IgnoredAny>,
) -> Response {
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

pub(super) async fn delete_hook(
    State(state): State<AppState>,
    Extension(session): Extension<SessionInfo>,
    Path(id): Path<String>,
    _: CheckedForm<serde::de::IgnoredAny>,
) -> Response {
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

#[derive(Deserialize)]
pub(super) struct RetryForm {
    #[serde(default)]
    return_to: String,
}

pub(super) async fn retry_event(
    State(state): State<AppState>,
    Extension(session): Extension<SessionInfo>,
    Path((id, event_id)): Path<(String, String)>,
    CheckedForm(form): CheckedForm<RetryForm>,
) -> Response {
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

pub(super) async fn discard_event(
    State(state): State<AppState>,
    Extension(session): Extension<SessionInfo>,
    Path((id, event_id)): Path<(String, String)>,
    CheckedForm(form): CheckedForm<RetryForm>,
) -> Response {
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
