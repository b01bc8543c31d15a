//! A hook's past: the deliveries log (one entry per attempt, newest first, 25 a page, "only
//! failures"), one attempt in full, the event history with its statuses and filters, and the actions
//! on it (retry one event, retry every failed event since a time, discard a waiting one).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::hooks::unknown_hook;
use super::openapi::ErrorBody;
use super::{parse_page, ApiError, AppJson, AppQuery, AppState};
use crate::clock::rfc3339_ms;
use crate::events::RESOURCE_ACTIONS;
use crate::store::{AttemptEntry, DeliveryStatus, EventAction, EventFilter, HookEvent};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// `true`: only attempts that did not succeed.
    #[param(value_type = Option<bool>)]
    pub(crate) only_failures: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[1-9][0-9]{0,17}$")]
    pub(crate) cursor: Option<String>,
    /// 1 to 100, default 25.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub(crate) limit: Option<String>,
}

/// One attempt, as a line of the deliveries log.
#[derive(Serialize, ToSchema)]
pub struct DeliveryOut {
    /// The attempt's id, for `GET .../deliveries/{delivery_id}`.
    pub(crate) id: i64,
    pub(crate) event_id: String,
    /// The trigger name or resource event (`Deal.update`).
    pub(crate) event: String,
    pub(crate) resource_name: Option<String>,
    pub(crate) resource_id: Option<i64>,
    pub(crate) event_type: Option<String>,
    /// The `webhook-id` header: the same for every attempt of the event to this hook.
    pub(crate) webhook_id: String,
    /// 1 for the first attempt.
    pub(crate) attempt: u32,
    pub(crate) started_at: String,
    pub(crate) duration_ms: i64,
    /// `success`, `http_error`, `timeout`, `connection_error` or `refused`.
    pub(crate) outcome: String,
    pub(crate) succeeded: bool,
    /// The target's HTTP status, when it answered.
    pub(crate) response_status: Option<u16>,
    pub(crate) error: Option<String>,
    /// An attempt of a test event (`POST /api/v1/hooks/{id}/test`).
    pub(crate) test: bool,
    /// An attempt of an event queued by this backfill.
    pub(crate) backfill_id: Option<String>,
}

impl From<AttemptEntry> for DeliveryOut {
    fn from(a: AttemptEntry) -> DeliveryOut {
        DeliveryOut {
            id: a.seq,
            event_id: a.event_id,
            event: a.event_name,
            resource_name: a.resource_name,
            resource_id: a.resource_id,
            event_type: a.event_type,
            webhook_id: a.message_id,
            attempt: a.attempt,
            started_at: rfc3339_ms(a.started_at),
            duration_ms: a.duration_ms,
            succeeded: a.outcome == "success",
            outcome: a.outcome,
            response_status: a.status_code,
            error: a.error,
            test: a.test,
            backfill_id: a.backfill_id,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryPage {
    pub(crate) deliveries: Vec<DeliveryOut>,
    pub(crate) next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct RequestOut {
    pub(crate) url: Option<String>,
    /// The headers sent; the authorization header shows its scheme only.
    #[schema(value_type = Object)]
    pub(crate) headers: Value,
    /// The body sent (JSON).
    #[schema(value_type = Object)]
    pub(crate) payload: Value,
}

#[derive(Serialize, ToSchema)]
pub struct ResponseOut {
    pub(crate) status: Option<u16>,
    #[schema(value_type = Option<Object>)]
    pub(crate) headers: Option<Value>,
    /// As received, cut at 20 KiB.
    pub(crate) body: Option<String>,
}

/// One attempt in full.
#[derive(Serialize, ToSchema)]
pub struct DeliveryDetailOut {
    #[serde(flatten)]
    pub(crate) summary: DeliveryOut,
    pub(crate) request: RequestOut,
    pub(crate) response: ResponseOut,
}

fn truthy(name: &str, value: Option<&str>) -> Result<bool, ApiError> {
    match value.map(str::trim) {
        None | Some("") | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(other) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("{name} must be true or false, not '{other}'"),
        )),
    }
}

async fn hook_exists(state: &AppState, id: &str) -> Result<(), ApiError> {
    let hook_id = id.to_owned();
    if state
        .on_store(move |store| store.hook_exists(&hook_id))
        .await?
    {
        Ok(())
    } else {
        Err(unknown_hook(id))
    }
}

/// The deliveries log of a hook: every attempt, newest first.
#[utoipa::path(get, path = "/api/v1/hooks/{id}/deliveries", operation_id = "listDeliveries", description = "A hook's deliveries log, newest first, 25 a page by default; only_failures keeps the failed attempts. Each entry has the request payload, the response headers and body.", tag = "history",
    params(("id" = String, Path, description = "The hook's id"), DeliveriesQuery),
    responses(
        (status = 200, body = DeliveryPage),
        (status = 400, description = "Bad cursor or filter", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, description = "Page size out of range", body = ErrorBody),
    ))]
pub async fn deliveries(
    State(state): State<AppState>,
    Path(id): Path<String>,
    AppQuery(query): AppQuery<DeliveriesQuery>,
) -> Result<Json<DeliveryPage>, ApiError> {
    let only_failures = truthy("only_failures", query.only_failures.as_deref())?;
    let (cursor, limit) = parse_page(query.cursor.as_deref(), query.limit.as_deref())?;
    Ok(Json(
        deliveries_page(&state, id, only_failures, cursor, limit).await?,
    ))
}

/// One page of a hook's deliveries log, newest first, before the attempt `cursor`.
pub(crate) async fn deliveries_page(
    state: &AppState,
    id: String,
    only_failures: bool,
    cursor: Option<i64>,
    limit: usize,
) -> Result<DeliveryPage, ApiError> {
    hook_exists(state, &id).await?;
    let page = state
        .on_store(move |store| store.hook_attempts(&id, only_failures, cursor, limit))
        .await?;
    Ok(DeliveryPage {
        deliveries: page.items.into_iter().map(DeliveryOut::from).collect(),
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    })
}

/// One attempt in full: the request (URL, headers, payload) and the response (status, headers, body).
#[utoipa::path(get, path = "/api/v1/hooks/{id}/deliveries/{delivery_id}", operation_id = "getDelivery", description = "One attempt of the deliveries log with its request payload and headers (authorization masked) and the response headers and body.", tag = "history",
    params(
        ("id" = String, Path, description = "The hook's id"),
        ("delivery_id" = i64, Path, minimum = 1, description = "The attempt's id from the deliveries log"),
    ),
    responses((status = 200, body = DeliveryDetailOut), (status = 404, body = ErrorBody)))]
pub async fn delivery(
    State(state): State<AppState>,
    Path((id, delivery_id)): Path<(String, String)>,
) -> Result<Json<DeliveryDetailOut>, ApiError> {
    Ok(Json(delivery_detail(&state, id, delivery_id).await?))
}

/// One attempt of a hook in full.
pub(crate) async fn delivery_detail(
    state: &AppState,
    id: String,
    delivery_id: String,
) -> Result<DeliveryDetailOut, ApiError> {
    let unknown = || {
        ApiError::not_found(
            "unknown_delivery",
            format!("hook '{id}' has no delivery '{delivery_id}'"),
        )
    };
    let seq: i64 = delivery_id.trim().parse().map_err(|_| unknown())?;
    hook_exists(state, &id).await?;
    let hook_id = id.clone();
    let detail = state
        .on_store(move |store| store.hook_attempt(&hook_id, seq))
        .await?
        .ok_or_else(unknown)?;
    let json = |text: &str| serde_json::from_str(text).unwrap_or(Value::String(text.to_owned()));
    Ok(DeliveryDetailOut {
        request: RequestOut {
            url: detail.url,
            headers: json(&detail.request_headers),
            payload: json(&detail.payload),
        },
        response: ResponseOut {
            status: detail.entry.status_code,
            headers: detail.response_headers.as_deref().map(json),
            body: detail.response_body,
        },
        summary: DeliveryOut::from(detail.entry),
    })
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// pending, delivering, delivered, retrying, failed or discarded.
    #[param(pattern = "^(pending|delivering|delivered|retrying|failed|discarded)$")]
    pub(crate) status: Option<String>,
    /// A table name, like `Deal`.
    pub(crate) resource: Option<String>,
    /// create, update or delete.
    #[param(pattern = "^(create|update|delete)$")]
    pub(crate) event_type: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[1-9][0-9]{0,17}$")]
    pub(crate) cursor: Option<String>,
    /// 1 to 100, default 25.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub(crate) limit: Option<String>,
}

/// One event of a hook and where its delivery to that hook stands.
#[derive(Serialize, ToSchema)]
pub struct EventOut {
    /// The event's id (`evt_...`), for retry and discard.
    pub(crate) id: String,
    pub(crate) webhook_id: String,
    /// The trigger name or resource event (`Deal.update`).
    pub(crate) event: String,
    pub(crate) resource_name: Option<String>,
    pub(crate) resource_id: Option<i64>,
    pub(crate) event_type: Option<String>,
    pub(crate) company_id: Option<i64>,
    pub(crate) project_id: Option<i64>,
    /// pending: waiting for its first attempt; delivering: an attempt is in flight; delivered: the
    /// target answered 2xx; retrying: an attempt failed and another is scheduled; failed: every
    /// attempt failed, or the target answered 410, or the hook's filter failed on it (see
    /// `filter_error`); discarded: dropped without delivery (by hand, because the hook was disabled
    /// or deleted, or because its changed filter rejects it).
    pub(crate) status: &'static str,
    pub(crate) attempts: u32,
    pub(crate) next_attempt_at: Option<String>,
    pub(crate) created_at: String,
    pub(crate) updated_at: String,
    /// Set while the event is held because the hook's filter failed on it (an error, not true or
    /// false): the error, with line and column. It is judged again when the filter changes or the
    /// event is retried.
    pub(crate) filter_error: Option<String>,
    /// A test event, sent by hand (`POST /api/v1/hooks/{id}/test`).
    pub(crate) test: bool,
    /// Queued by this backfill (`POST /api/v1/hooks/{id}/backfill`).
    pub(crate) backfill_id: Option<String>,
}

impl From<HookEvent> for EventOut {
    fn from(e: HookEvent) -> EventOut {
        EventOut {
            id: e.event_id,
            webhook_id: e.message_id,
            event: e.event_name,
            resource_name: e.resource_name,
            resource_id: e.resource_id,
            event_type: e.event_type,
            company_id: e.company_id,
            project_id: e.project_id,
            status: e.status.as_str(),
            attempts: e.attempts,
            next_attempt_at: e.next_attempt_at.map(rfc3339_ms),
            created_at: rfc3339_ms(e.created_at),
            updated_at: rfc3339_ms(e.updated_at),
            filter_error: e.filter_error,
            test: e.test,
            backfill_id: e.backfill_id,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct EventPage {
    pub(crate) events: Vec<EventOut>,
    pub(crate) next_cursor: Option<String>,
}

/// The event history of a hook, newest first, within the retention window.
#[utoipa::path(get, path = "/api/v1/hooks/{id}/events", operation_id = "listHookEvents", description = "A hook's event history, newest first, with each event's delivery status; filter by status, event type and time.", tag = "history",
    params(("id" = String, Path, description = "The hook's id"), EventsQuery),
    responses(
        (status = 200, body = EventPage),
        (status = 400, description = "Bad cursor", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, description = "Bad status, event type or page size", body = ErrorBody),
    ))]
pub async fn events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    AppQuery(query): AppQuery<EventsQuery>,
) -> Result<Json<EventPage>, ApiError> {
    let (cursor, limit) = parse_page(query.cursor.as_deref(), query.limit.as_deref())?;
    let filter = event_filter(
        query.status.as_deref(),
        query.resource.as_deref(),
        query.event_type.as_deref(),
    )?;
    Ok(Json(events_page(&state, id, filter, cursor, limit).await?))
}

/// The filter of an event history listing, from its query words; blank words filter nothing.
pub(crate) fn event_filter(
    status: Option<&str>,
    resource: Option<&str>,
    event_type: Option<&str>,
) -> Result<EventFilter, ApiError> {
    let status = match status.map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(text) => Some(DeliveryStatus::parse(text).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_status",
                format!("no status '{text}': pending, delivering, delivered, retrying, failed or discarded"),
            )
        })?),
    };
    let event_type = event_type.map(str::trim).filter(|t| !t.is_empty());
    if let Some(t) = event_type {
        if !RESOURCE_ACTIONS.contains(&t) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_event_type",
                format!("no event type '{t}': create, update or delete"),
            ));
        }
    }
    Ok(EventFilter {
        status,
        resource_name: resource
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_owned),
        event_type: event_type.map(str::to_owned),
    })
}

/// One page of a hook's event history, newest first, before the delivery `cursor`.
pub(crate) async fn events_page(
    state: &AppState,
    id: String,
    filter: EventFilter,
    cursor: Option<i64>,
    limit: usize,
) -> Result<EventPage, ApiError> {
    hook_exists(state, &id).await?;
    let page = state
        .on_store(move |store| store.hook_events(&id, &filter, cursor, limit))
        .await?;
    Ok(EventPage {
        events: page.items.into_iter().map(EventOut::from).collect(),
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    })
}

#[derive(Serialize, ToSchema)]
pub struct EventActionOut {
    pub(crate) event_id: String,
    pub(crate) status: &'static str,
}

fn action_result(
    result: EventAction,
    hook_id: &str,
    event_id: String,
    done: DeliveryStatus,
    conflict_code: &'static str,
) -> Result<EventActionOut, ApiError> {
    match result {
        EventAction::Done => Ok(EventActionOut {
            event_id,
            status: done.as_str(),
        }),
        EventAction::NotFound => Err(ApiError::not_found(
            "unknown_event",
            format!("hook '{hook_id}' has no event '{event_id}'"),
        )),
        EventAction::Conflict(status) => Err(ApiError::new(
            StatusCode::CONFLICT,
            conflict_code,
            format!("event '{event_id}' is {}", status.as_str()),
        )),
    }
}

/// Delivers one event to the hook again, now: one more attempt for a failed or discarded event, a
/// new delivery of a delivered one, an earlier attempt for a retrying one.
#[utoipa::path(post, path = "/api/v1/hooks/{id}/events/{event_id}/retry", operation_id = "retryEvent", description = "Sends one event of a hook again now, as a new attempt of the same delivery (same webhook-id).", tag = "history",
    params(
        ("id" = String, Path, description = "The hook's id"),
        ("event_id" = String, Path, description = "The event's id (evt_...)"),
    ),
    responses(
        (status = 202, body = EventActionOut),
        (status = 404, body = ErrorBody),
        (status = 409, description = "An attempt is in flight", body = ErrorBody),
    ))]
pub async fn retry_event(
    State(state): State<AppState>,
    Path((id, event_id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<EventActionOut>), ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(retry_hook_event(&state, id, event_id).await?),
    ))
}

/// Makes one event of the hook due again, now.
pub(crate) async fn retry_hook_event(
    state: &AppState,
    id: String,
    event_id: String,
) -> Result<EventActionOut, ApiError> {
    hook_exists(state, &id).await?;
    let (hook_id, event) = (id.clone(), event_id.clone());
    let held = state
        .on_store(move |store| store.filter_held_events(&hook_id, Some(&event), None, 1))
        .await?;
    if !held.is_empty() {
        return retry_held_event(state, id, event_id).await;
    }
    let (hook_id, event) = (id.clone(), event_id.clone());
    let result = state
        .on_store(move |store| store.retry_hook_event(&hook_id, &event))
        .await?;
    let out = action_result(
        result,
        &id,
        event_id,
        DeliveryStatus::Pending,
        "event_in_flight",
    )?;
    state.deliveries_waiting.notify_one();
    tracing::info!(hook_id = %id, event_id = %out.event_id, "event retried by hand");
    Ok(out)
}

/// An event held because the hook's filter failed on it is not sent as it is: the filter (as it
/// is now) judges it again, and it is delivered, discarded, or refused with the filter's error.
async fn retry_held_event(
    state: &AppState,
    id: String,
    event_id: String,
) -> Result<EventActionOut, ApiError> {
    let hook = super::hooks::load(state, id.clone()).await?;
    let outcome =
        super::filters::rejudge(state, id.clone(), hook.filter, Some(event_id.clone())).await?;
    if outcome.still_failing > 0 {
        let event = (id.clone(), event_id.clone());
        let error = state
            .on_store(move |store| store.filter_held_events(&event.0, Some(&event.1), None, 1))
            .await?
            .pop()
            .map(|held| held.error)
            .unwrap_or_default();
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "filter_failed",
            format!(
                "the hook's filter still fails on event '{event_id}', which stays held: {error}"
            ),
        ));
    }
    let status = if outcome.rejected > 0 {
        DeliveryStatus::Discarded
    } else {
        DeliveryStatus::Pending
    };
    tracing::info!(hook_id = %id, %event_id, status = status.as_str(), "held event judged again by hand");
    Ok(EventActionOut {
        event_id,
        status: status.as_str(),
    })
}

/// Drops a waiting event (pending or retrying) without delivering it.
#[utoipa::path(post, path = "/api/v1/hooks/{id}/events/{event_id}/discard", operation_id = "discardEvent", description = "Stops a waiting event of a hook from being retried; it is recorded as discarded.", tag = "history",
    params(
        ("id" = String, Path, description = "The hook's id"),
        ("event_id" = String, Path, description = "The event's id (evt_...)"),
    ),
    responses(
        (status = 200, body = EventActionOut),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The event is not waiting", body = ErrorBody),
    ))]
pub async fn discard_event(
    State(state): State<AppState>,
    Path((id, event_id)): Path<(String, String)>,
) -> Result<Json<EventActionOut>, ApiError> {
    discard_hook_event(&state, id, event_id).await.map(Json)
}

/// Discards a waiting event of a hook (the API's and the pages' one way).
pub(crate) async fn discard_hook_event(
    state: &AppState,
    id: String,
    event_id: String,
) -> Result<EventActionOut, ApiError> {
    hook_exists(state, &id).await?;
    let (hook_id, event) = (id.clone(), event_id.clone());
    let result = state
        .on_store(move |store| store.discard_hook_event(&hook_id, &event))
        .await?;
    action_result(
        result,
        &id,
        event_id,
        DeliveryStatus::Discarded,
        "event_not_waiting",
    )
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryFailedIn {
    /// RFC 3339: retry the events that failed at or after this time.
    pub(crate) since: Option<String>,
    /// Also the discarded ones: what the hook missed while disabled. Default false.
    pub(crate) include_discarded: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct RetryFailedOut {
    pub(crate) retried: usize,
}

/// Retries every event of the hook that failed since a time: recovery after the target's outage.
#[utoipa::path(post, path = "/api/v1/hooks/{id}/retry-failed", operation_id = "retryFailedEvents", description = "Queues every failed event of a hook (since a time, if given) for a new attempt now.", tag = "history",
    request_body = RetryFailedIn,
    params(("id" = String, Path, description = "The hook's id")),
    responses(
        (status = 202, body = RetryFailedOut),
        (status = 404, body = ErrorBody),
        (status = 422, description = "Missing or malformed time", body = ErrorBody),
    ))]
pub async fn retry_failed(
    State(state): State<AppState>,
    Path(id): Path<String>,
    AppJson(body): AppJson<RetryFailedIn>,
) -> Result<(StatusCode, Json<RetryFailedOut>), ApiError> {
    let retried = retry_failed_since(
        &state,
        id,
        body.since,
        body.include_discarded.unwrap_or(false),
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(RetryFailedOut { retried })))
}

/// Retries the hook's events that failed (and, if asked, were discarded) since `since`, an RFC 3339
/// time; says how many.
pub(crate) async fn retry_failed_since(
    state: &AppState,
    id: String,
    since: Option<String>,
    include_discarded: bool,
) -> Result<usize, ApiError> {
    let since = since
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ApiError::missing_field("since"))?;
    let since_ms = crate::clock::parse_rfc3339_ms(since.trim()).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_time",
            format!("since '{since}' is not an RFC 3339 time like 2026-11-24T08:00:00Z"),
        )
    })?;
    hook_exists(state, &id).await?;
    let hook_id = id.clone();
    let retried = state
        .on_store(move |store| store.retry_failed_since(&hook_id, since_ms, include_discarded))
        .await?;
    if retried > 0 {
        state.deliveries_waiting.notify_one();
    }
    tracing::info!(hook_id = %id, retried, %since, "failed events retried by hand");
    Ok(retried)
}

/// Where a hook stands: its deliveries by status and its last attempt.
#[derive(Serialize, ToSchema)]
pub struct HookSummaryOut {
    pub(crate) hook_id: String,
    /// Delivered to the target (2xx).
    pub(crate) delivered: u64,
    /// Every attempt failed, or the target answered 410.
    pub(crate) failed: u64,
    /// Waiting: for a first attempt, for a retry, or in flight.
    pub(crate) pending: u64,
    /// Of `pending`, those waiting for a retry after a failed attempt.
    pub(crate) retrying: u64,
    /// Dropped without delivery.
    pub(crate) discarded: u64,
    /// Events the hook's filter kept from it (they made no delivery and are not counted above).
    pub(crate) filtered_out: u64,
    /// When the oldest event still waiting for the hook was made (RFC 3339): how far behind it
    /// is, by its rate limit or its retries. `null` when nothing waits.
    pub(crate) oldest_waiting_since: Option<String>,
    /// How long that is, in seconds.
    pub(crate) oldest_waiting_seconds: Option<f64>,
    /// The hook's rate limit, deliveries per second.
    pub(crate) rate_limit_per_second: Option<f64>,
    /// The newest attempt, if any.
    pub(crate) last_delivery: Option<DeliveryOut>,
}

/// A hook's overview: how many of its events were delivered, failed or wait, and its last delivery.
#[utoipa::path(get, path = "/api/v1/hooks/{id}/summary", operation_id = "getHookSummary", description = "A hook's deliveries counted by outcome, its last attempt and whether it is failing.", tag = "history",
    params(("id" = String, Path, description = "The hook's id")),
    responses((status = 200, body = HookSummaryOut), (status = 404, body = ErrorBody)))]
pub async fn summary(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<HookSummaryOut>, ApiError> {
    Ok(Json(hook_summary(&state, id).await?))
}

pub(crate) async fn hook_summary(state: &AppState, id: String) -> Result<HookSummaryOut, ApiError> {
    let hook = super::hooks::load(state, id.clone()).await?;
    let hook_id = id.clone();
    let (counts, last, oldest_waiting) = state
        .on_store(move |store| {
            let counts = store.hook_delivery_counts(&hook_id)?;
            let last = store.hook_attempts(&hook_id, false, None, 1)?;
            let oldest = store.hook_oldest_waiting(&hook_id)?;
            Ok((counts, last.items.into_iter().next(), oldest))
        })
        .await?;
    let count = |wanted: &[DeliveryStatus]| {
        counts
            .iter()
            .filter(|(status, _)| wanted.contains(status))
            .map(|(_, n)| n)
            .sum()
    };
    Ok(HookSummaryOut {
        hook_id: id,
        delivered: count(&[DeliveryStatus::Delivered]),
        failed: count(&[DeliveryStatus::Failed]),
        pending: count(&[
            DeliveryStatus::Pending,
            DeliveryStatus::Delivering,
            DeliveryStatus::Retrying,
        ]),
        retrying: count(&[DeliveryStatus::Retrying]),
        discarded: count(&[DeliveryStatus::Discarded]),
        filtered_out: hook.filtered_out,
        oldest_waiting_since: oldest_waiting.map(rfc3339_ms),
        oldest_waiting_seconds: oldest_waiting
            .map(|at| (crate::clock::now_ms() - at).max(0) as f64 / 1000.0),
        rate_limit_per_second: hook.rate_limit_per_second,
        last_delivery: last.map(DeliveryOut::from),
    })
}
