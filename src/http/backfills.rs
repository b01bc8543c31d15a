//! `/api/v1/hooks/{id}/backfill(s)`: the records that already exist, queued as events for one hook
//! (see `crate::backfill`), and their progress.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::hooks::{load, unknown_hook};
use super::openapi::ErrorBody;
use super::{blocking, ApiError, AppJson, AppState};
use crate::backfill::{BackfillError, BackfillRows};
use crate::clock::rfc3339_ms;
use crate::store::Backfill;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackfillIn {
    /// The trigger whose body script renders each row, or a resource event (`Deal.create`,
    /// `Deal.update`: each row as it is now); the hook must select it.
    pub(crate) event: Option<String>,
    /// A read-only query whose first column is the row ids, in the order to send them
    /// (`SELECT id FROM "Deal" WHERE is_project = 1 ORDER BY id`). Give this or `row_ids`.
    pub(crate) query: Option<String>,
    /// The row ids, in the order to send them. Give this or `query`.
    pub(crate) row_ids: Option<Vec<i64>>,
}

#[derive(Serialize, ToSchema)]
pub struct BackfillOut {
    pub(crate) id: String,
    pub(crate) hook_id: String,
    pub(crate) event: String,
    /// `preparing` (its rows are being stored), `running`, `done`, `failed` (see `error`), or
    /// `cancelled` (what it queued before stays queued).
    pub(crate) status: &'static str,
    /// How many rows it has.
    pub(crate) rows: u64,
    /// How many are handled: queued, or failed to render.
    pub(crate) done: u64,
    /// Of `done`, queued for delivery.
    pub(crate) queued: u64,
    /// Of `done`, the rows whose body script failed (in the script failures, with the row).
    pub(crate) failed: u64,
    pub(crate) error: Option<String>,
    pub(crate) created_at: String,
    pub(crate) updated_at: String,
}

impl From<Backfill> for BackfillOut {
    fn from(b: Backfill) -> BackfillOut {
        BackfillOut {
            id: b.id,
            hook_id: b.hook_id,
            event: b.event_name,
            status: b.status.as_str(),
            rows: b.total,
            done: b.done,
            queued: b.done.saturating_sub(b.failed),
            failed: b.failed,
            error: b.error,
            created_at: rfc3339_ms(b.created_at),
            updated_at: rfc3339_ms(b.updated_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct BackfillList {
    /// The hook's backfills, newest first (the 20 newest).
    pub(crate) backfills: Vec<BackfillOut>,
}

/// Queues existing rows as events for this hook.
#[utoipa::path(post, path = "/api/v1/hooks/{id}/backfill", operation_id = "startBackfill", description = "Renders a trigger's body script for existing rows (given as row_ids, or the ids a read-only query returns) and queues the events for this hook only, in the order given, marked as backfill. A resource event the hook selects (Table.create or Table.update) sends each row as it is now in the resource event's envelope, old_row null. Works in steps in the background, never holding the write lock long nor filling the outbox, and resumes after a restart. Answers 202 with the backfill's id and row count; follow it with GET .../backfills/{backfill_id}.", tag = "hooks", request_body = BackfillIn,
    params(("id" = String, Path, description = "The hook's id")),
    responses(
        (status = 202, body = BackfillOut),
        (status = 404, body = ErrorBody),
        (status = 422, description = "Unknown or unselected trigger, a resource event's delete, a query that fails or returns no ids, or more than 1,000,000 rows", body = ErrorBody),
    ))]
pub async fn start(
    State(state): State<AppState>,
    Path(id): Path<String>,
    AppJson(body): AppJson<BackfillIn>,
) -> Result<(StatusCode, Json<BackfillOut>), ApiError> {
    let event = body
        .event
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty())
        .ok_or_else(|| ApiError::missing_field("event"))?;
    let rows = match (body.query, body.row_ids) {
        (Some(query), None) if !query.trim().is_empty() => BackfillRows::Query(query),
        (None, Some(ids)) => BackfillRows::Ids(ids),
        _ => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_backfill",
                "give either query or row_ids",
            ))
        }
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(start_backfill(&state, id, event, rows).await?),
    ))
}

/// Starts a backfill (the API's and the pages' one way).
pub(crate) async fn start_backfill(
    state: &AppState,
    id: String,
    event: String,
    rows: BackfillRows,
) -> Result<BackfillOut, ApiError> {
    let hook = load(state, id).await?;
    let (store, registry) = (state.store.clone(), state.registry.clone());
    let backfill = blocking(move || {
        crate::backfill::start(&store, &registry, &hook.id, &hook.events, &event, rows).map_err(
            |e| match e {
                BackfillError::Invalid(message) => ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_backfill",
                    message,
                ),
                BackfillError::Store(e) => ApiError::from(e),
            },
        )
    })
    .await?;
    Ok(backfill.into())
}

/// One backfill's progress.
#[utoipa::path(get, path = "/api/v1/hooks/{id}/backfills/{backfill_id}", operation_id = "getBackfill", description = "A backfill's progress: rows, done, queued, failed, status.", tag = "hooks",
    params(
        ("id" = String, Path, description = "The hook's id"),
        ("backfill_id" = String, Path, description = "The backfill's id (bf_...)"),
    ),
    responses((status = 200, body = BackfillOut), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Path((id, backfill_id)): Path<(String, String)>,
) -> Result<Json<BackfillOut>, ApiError> {
    let (hook_id, wanted) = (id.clone(), backfill_id.clone());
    let found = state
        .on_store(move |store| {
            Ok((
                store.hook_exists(&hook_id)?,
                store.get_backfill(&hook_id, &wanted)?,
            ))
        })
        .await?;
    match found {
        (false, _) => Err(unknown_hook(&id)),
        (true, None) => Err(ApiError::not_found(
            "unknown_backfill",
            format!("hook '{id}' has no backfill '{backfill_id}'"),
        )),
        (true, Some(backfill)) => Ok(Json(backfill.into())),
    }
}

/// Stops a backfill.
#[utoipa::path(post, path = "/api/v1/hooks/{id}/backfills/{backfill_id}/cancel", operation_id = "cancelBackfill", description = "Stops a running backfill: no more of its rows are queued; the events it queued already stay queued (discard them from the events list, or disable the hook, to stop those too).", tag = "hooks",
    params(
        ("id" = String, Path, description = "The hook's id"),
        ("backfill_id" = String, Path, description = "The backfill's id (bf_...)"),
    ),
    responses(
        (status = 200, body = BackfillOut),
        (status = 404, body = ErrorBody),
        (status = 409, description = "It has already ended", body = ErrorBody),
    ))]
pub async fn cancel(
    State(state): State<AppState>,
    Path((id, backfill_id)): Path<(String, String)>,
) -> Result<Json<BackfillOut>, ApiError> {
    Ok(Json(cancel_backfill(&state, id, backfill_id).await?))
}

/// Cancels a backfill (the API's and the pages' one way).
pub(crate) async fn cancel_backfill(
    state: &AppState,
    id: String,
    backfill_id: String,
) -> Result<BackfillOut, ApiError> {
    let (hook_id, wanted) = (id.clone(), backfill_id.clone());
    let (exists, cancelled, backfill) = state
        .on_store(move |store| {
            let exists = store.hook_exists(&hook_id)?;
            let cancelled = exists && store.cancel_backfill(&hook_id, &wanted)?;
            Ok((exists, cancelled, store.get_backfill(&hook_id, &wanted)?))
        })
        .await?;
    let backfill = match (exists, backfill) {
        (false, _) => return Err(unknown_hook(&id)),
        (true, None) => {
            return Err(ApiError::not_found(
                "unknown_backfill",
                format!("hook '{id}' has no backfill '{backfill_id}'"),
            ))
        }
        (true, Some(backfill)) => backfill,
    };
    if !cancelled {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "backfill_ended",
            format!(
                "backfill '{backfill_id}' has already ended ({})",
                backfill.status.as_str()
            ),
        ));
    }
    tracing::info!(hook_id = %id, %backfill_id, done = backfill.done, "backfill cancelled");
    Ok(backfill.into())
}

/// A hook's backfills.
#[utoipa::path(get, path = "/api/v1/hooks/{id}/backfills", operation_id = "listBackfills", description = "The hook's backfills, newest first (the 20 newest), with their progress.", tag = "hooks",
    params(("id" = String, Path, description = "The hook's id")),
    responses((status = 200, body = BackfillList), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<BackfillList>, ApiError> {
    Ok(Json(hook_backfills(&state, id).await?))
}

pub(crate) async fn hook_backfills(state: &AppState, id: String) -> Result<BackfillList, ApiError> {
    let hook_id = id.clone();
    let (exists, backfills) = state
        .on_store(move |store| {
            Ok((
                store.hook_exists(&hook_id)?,
                store.hook_backfills(&hook_id, 20)?,
            ))
        })
        .await?;
    if !exists {
        return Err(unknown_hook(&id));
    }
    Ok(BackfillList {
        backfills: backfills.into_iter().map(BackfillOut::from).collect(),
    })
}
