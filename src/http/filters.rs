//! Hooks' filters over the API: the check a filter passes before it is saved (it compiles, with
//! line and column when it does not), judging held events again when a filter changes or one of
//! them is retried, and `POST /api/v1/hooks/{id}/filter/test`, which tries a filter on the hook's
//! sample payloads before it goes live. What a filter is and where it runs: `crate::filters`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::openapi::ErrorBody;
use super::{blocking, parse_json, ApiError, AppState};
use crate::events::{event_samples, EventSample};
use crate::filters::{compile_error, rejudge_held, Filters, Rejudged};
use crate::scripts::FilterInput;
use crate::store::Judgement;

/// The longest filter herald stores: a filter is an expression, not a program.
const MAX_FILTER: usize = 10_000;
/// How many samples of each trigger a filter is tried on.
const SAMPLES_PER_TRIGGER: usize = 5;

/// A filter as sent, checked: `None` for none (absent, or only blanks), else the text, which
/// compiles. A filter that does not is refused with `invalid_filter` and its line and column.
pub(crate) async fn checked_filter(
    state: &AppState,
    filter: Option<String>,
) -> Result<Option<String>, ApiError> {
    let Some(filter) = filter.filter(|f| !f.trim().is_empty()) else {
        return Ok(None);
    };
    if filter.len() > MAX_FILTER {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "filter_too_long",
            format!(
                "the filter is {} bytes, over the limit of {MAX_FILTER}",
                filter.len()
            ),
        ));
    }
    let sandboxes = state.sandboxes.clone();
    blocking(move || {
        let compiled = sandboxes.with(|sandbox| sandbox.compile_filter(&filter).map(|_| ()))?;
        match compiled {
            Ok(()) => Ok(Some(filter)),
            Err(diagnostic) => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_filter",
                compile_error(&diagnostic),
            )),
        }
    })
    .await
}

/// Judges the events held for hook `hook_id` again by `filter` (`event_id`: that one only), and
/// wakes the worker for those it lets through.
pub(crate) async fn rejudge(
    state: &AppState,
    hook_id: String,
    filter: Option<String>,
    event_id: Option<String>,
) -> Result<Rejudged, ApiError> {
    let (store, sandboxes) = (state.store.clone(), state.sandboxes.clone());
    let outcome = blocking(move || {
        sandboxes
            .with(|sandbox| {
                rejudge_held(
                    &store,
                    sandbox,
                    &hook_id,
                    filter.as_deref(),
                    event_id.as_deref(),
                )
            })
            .and_then(|r| r)
            .map_err(ApiError::from)
    })
    .await?;
    if outcome.delivered > 0 {
        state.deliveries_waiting.notify_one();
    }
    if outcome != Rejudged::default() {
        tracing::info!(
            delivered = outcome.delivered,
            rejected = outcome.rejected,
            still_failing = outcome.still_failing,
            "held events judged again"
        );
    }
    Ok(outcome)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterTestIn {
    /// The filter to try; left out, the hook's own.
    pub(crate) filter: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct FilterSampleOut {
    /// The trigger or resource event the sample is of.
    pub(crate) event: String,
    /// The sample payload the filter saw.
    #[schema(value_type = Object)]
    pub(crate) payload: Value,
    /// Whether the filter lets it through; `null` when it failed (see `error`).
    pub(crate) matches: Option<bool>,
    /// Why the filter failed on it, with line and column.
    pub(crate) error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct FilterTestOut {
    /// The filter tried; `null` when the hook has none (every sample then matches).
    pub(crate) filter: Option<String>,
    pub(crate) samples: Vec<FilterSampleOut>,
    /// Events whose samples could not be made (a failing body script, a table without rows).
    pub(crate) unavailable: Vec<SampleUnavailable>,
}

#[derive(Serialize, ToSchema)]
pub struct SampleUnavailable {
    pub(crate) event: String,
    pub(crate) reason: String,
}

/// Tries a filter on the hook's sample payloads.
#[utoipa::path(post, path = "/api/v1/hooks/{id}/filter/test", operation_id = "testHookFilter", description = "Tries a filter (or, without one, the hook's own) on sample payloads of the hook's events: perform-list's samples for triggers, the newest row for resource events. Saves nothing.", tag = "hooks",
    request_body(content = FilterTestIn, description = "Optional"),
    params(("id" = String, Path, description = "The hook's id")),
    responses(
        (status = 200, body = FilterTestOut),
        (status = 404, body = ErrorBody),
        (status = 422, description = "The filter does not compile", body = ErrorBody),
    ))]
pub async fn test(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<FilterTestOut>, ApiError> {
    let wanted = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        parse_json::<FilterTestIn>(&body)?.filter
    };
    Ok(Json(test_filter(&state, id, wanted).await?))
}

/// Tries `filter` (or the hook's own) on the hook's samples (the API's and the pages' one way).
pub(crate) async fn test_filter(
    state: &AppState,
    id: String,
    filter: Option<String>,
) -> Result<FilterTestOut, ApiError> {
    let hook = super::hooks::load(state, id).await?;
    let filter = match filter {
        Some(filter) => checked_filter(state, Some(filter)).await?,
        None => hook.filter.clone(),
    };
    let scripts = state.registry.current();
    let (store, sandboxes) = (state.store.clone(), state.sandboxes.clone());
    blocking(move || {
        sandboxes
            .with(|sandbox| {
                let mut filters = Filters::default();
                let mut out = FilterTestOut {
                    filter: filter.clone(),
                    samples: Vec::new(),
                    unavailable: Vec::new(),
                };
                for event in &hook.events {
                    let samples =
                        match event_samples(sandbox, &scripts, &store, event, SAMPLES_PER_TRIGGER)?
                        {
                            Ok(samples) => samples,
                            Err(reason) => {
                                out.unavailable.push(SampleUnavailable {
                                    event: event.clone(),
                                    reason,
                                });
                                continue;
                            }
                        };
                    for EventSample {
                        event: sample,
                        change,
                    } in samples
                    {
                        let payload: Value =
                            serde_json::from_str(&sample.payload).unwrap_or(Value::Null);
                        let judgement = match &filter {
                            Some(source) => {
                                let input =
                                    FilterInput::fresh(event, &sample.payload, change.as_ref());
                                filters.judge(sandbox, source, &input)
                            }
                            None => Judgement::Passed,
                        };
                        let (matches, error) = match judgement {
                            Judgement::Passed => (Some(true), None),
                            Judgement::Rejected => (Some(false), None),
                            Judgement::Failed(error) => (None, Some(error)),
                        };
                        out.samples.push(FilterSampleOut {
                            event: event.clone(),
                            payload,
                            matches,
                            error,
                        });
                    }
                }
                Ok::<_, crate::store::StoreError>(out)
            })
            .and_then(|r| r)
            .map_err(ApiError::from)
    })
    .await
}
