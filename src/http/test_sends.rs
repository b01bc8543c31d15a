//! `POST /api/v1/hooks/{id}/test`: one sample event sent to a hook at once, through the normal
//! delivery path (signed, with the hook's authorization header, retried like any other), marked as
//! a test in the deliveries log and the event history. The answer waits for the first attempt, so
//! that whoever pressed "Send test event" sees what the endpoint answered.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::hooks::{load, unknown_hook};
use super::openapi::ErrorBody;
use super::{blocking, parse_json, ApiError, AppState};
use crate::events::event_samples;
use crate::store::DeliveryStatus;

/// How much of the endpoint's answer the test's result shows (the deliveries log has it whole).
const SHOWN_BODY: usize = 2_000;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestSendIn {
    /// A trigger or resource event the hook selects; left out, the first it selects.
    pub(crate) event: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct TestSendOut {
    /// The test event's id (`evt_...`), in the hook's events.
    pub(crate) event_id: String,
    /// The `webhook-id` header it was sent with.
    pub(crate) webhook_id: String,
    pub(crate) event: String,
    /// The delivery's status when the answer was given: `delivered`, `retrying` (the attempt
    /// failed; it is retried like any other), `failed`, or `pending` when no attempt finished
    /// within the hook's time-out.
    pub(crate) status: String,
    /// The first attempt, once finished.
    pub(crate) attempt: Option<TestAttemptOut>,
}

#[derive(Serialize, ToSchema)]
pub struct TestAttemptOut {
    /// `success`, `http_error`, `timeout`, `connection_error` or `refused`.
    pub(crate) outcome: String,
    pub(crate) response_status: Option<u16>,
    /// The start of what the endpoint answered (the deliveries log has all of it).
    pub(crate) response_body: Option<String>,
    pub(crate) duration_ms: i64,
    pub(crate) error: Option<String>,
}

/// Sends one sample event to the hook now.
#[utoipa::path(post, path = "/api/v1/hooks/{id}/test", operation_id = "sendTestEvent", description = "Sends one sample payload of an event the hook selects (perform-list's newest sample for a trigger, the newest row for a resource event) to the hook at once, through the normal delivery path: signed, with its authorization header, recorded in the deliveries log and marked as a test. Answers once the first attempt finished, or when the delivery time-out has passed (status pending).", tag = "hooks",
    request_body(content = TestSendIn, description = "Optional"),
    params(("id" = String, Path, description = "The hook's id")),
    responses(
        (status = 200, description = "The first attempt finished", body = TestSendOut),
        (status = 202, description = "Sent, not yet answered", body = TestSendOut),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The hook is disabled", body = ErrorBody),
        (status = 422, description = "The hook does not select that event, or it has no sample", body = ErrorBody),
    ))]
pub async fn send(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<TestSendOut>), ApiError> {
    let event = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        parse_json::<TestSendIn>(&body)?.event
    };
    let out = send_test_event(&state, id, event).await?;
    let status = if out.attempt.is_some() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(out)))
}

/// Sends a test event (the API's and the pages' one way).
pub(crate) async fn send_test_event(
    state: &AppState,
    id: String,
    event: Option<String>,
) -> Result<TestSendOut, ApiError> {
    let hook = load(state, id.clone()).await?;
    if !hook.enabled {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "hook_disabled",
            "the hook is disabled: enable it to send it a test event",
        ));
    }
    let event = match event.map(|e| e.trim().to_owned()).filter(|e| !e.is_empty()) {
        Some(event) if hook.events.contains(&event) => event,
        Some(event) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "event_not_selected",
                format!(
                    "the hook does not select '{event}'; it selects: {}",
                    hook.events.join(", ")
                ),
            ))
        }
        None => hook.events.first().cloned().ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "no_event_selected",
                "the hook selects no event yet: tick one to send a test of it",
            )
        })?,
    };
    let scripts = state.registry.current();
    let (store, sandboxes) = (state.store.clone(), state.sandboxes.clone());
    let (hook_id, name) = (id.clone(), event.clone());
    let (event_id, message_id) = blocking(move || {
        let sample = sandboxes
            .with(|sandbox| event_samples(sandbox, &scripts, &store, &name, 1))?
            .map_err(ApiError::from)?;
        let mut sample = match sample {
            Ok(samples) if !samples.is_empty() => samples.into_iter().next().expect("not empty"),
            Ok(_) => return Err(no_sample(&name, "its body script returned no sample")),
            Err(reason) => return Err(no_sample(&name, &reason)),
        };
        sample.event.id = crate::ids::event_id();
        let message_id = store
            .insert_test_event(&hook_id, &sample.event)
            .map_err(ApiError::from)?
            .ok_or_else(|| unknown_hook(&hook_id))?;
        Ok((sample.event.id, message_id))
    })
    .await?;
    state.deliveries_waiting.notify_one();
    tracing::info!(hook_id = %id, %event, %event_id, "test event sent");

    // The first attempt ends within the time-out; a little more for its record to be written.
    let deadline = tokio::time::Instant::now() + state.delivery_timeout + Duration::from_secs(2);
    loop {
        let message = message_id.clone();
        let (status, attempts) = state
            .on_store(move |store| {
                Ok((
                    store.delivery_status(&message)?,
                    store.attempts_of(&message)?,
                ))
            })
            .await?;
        let status = status.unwrap_or(DeliveryStatus::Pending);
        if let Some(first) = attempts.into_iter().next() {
            return Ok(TestSendOut {
                event_id,
                webhook_id: message_id,
                event,
                status: status.as_str().to_owned(),
                attempt: Some(TestAttemptOut {
                    outcome: first.outcome,
                    response_status: first.status_code,
                    response_body: first
                        .response_body
                        .map(|b| b.chars().take(SHOWN_BODY).collect()),
                    duration_ms: first.duration_ms,
                    error: first.error,
                }),
            });
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(TestSendOut {
                event_id,
                webhook_id: message_id,
                event,
                status: status.as_str().to_owned(),
                attempt: None,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn no_sample(event: &str, reason: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "no_sample",
        format!("no sample of {event} to send: {reason}"),
    )
}
