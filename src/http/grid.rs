//! `/api/v1/hooks/{id}/grid` and `/triggers`: which events a hook receives, one cell at a time:
//! cells of the resource grid (`Deal.update`) and named triggers. Each cell is its own request and
//! takes effect for the very next change; there is no "submit".

use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::hooks::{checked_events, load, sync_tracking, unknown_hook, unprocessable};
use super::openapi::ErrorBody;
use super::{ApiError, AppState};
use crate::events::{parse_resource_event, resource_event_name, RESOURCE_ACTIONS};

/// The resource grid of a hook: every application table with its create/update/delete cells, and the
/// named triggers beside it.
#[derive(Serialize, ToSchema)]
pub struct GridOut {
    pub(crate) resources: Vec<GridRow>,
    pub(crate) triggers: Vec<TriggerCell>,
}

#[derive(Serialize, ToSchema)]
pub struct GridRow {
    pub(crate) resource: String,
    pub(crate) create: bool,
    pub(crate) update: bool,
    pub(crate) delete: bool,
}

#[derive(Serialize, ToSchema)]
pub struct TriggerCell {
    pub(crate) trigger: String,
    pub(crate) selected: bool,
    /// False when the hook selects a trigger whose body script is gone.
    pub(crate) available: bool,
}

#[derive(Serialize, ToSchema)]
pub struct CellOut {
    pub(crate) hook_id: String,
    /// `Deal.update` or a trigger name.
    pub(crate) event: String,
    pub(crate) selected: bool,
}

/// The grid of one hook.
#[utoipa::path(get, path = "/api/v1/hooks/{id}/grid", operation_id = "getGrid", description = "The hook's resources x create/update/delete grid: which cells are ticked.", tag = "hooks",
    params(("id" = String, Path, description = "The hook's id")),
    responses((status = 200, body = GridOut), (status = 404, body = ErrorBody)))]
pub async fn grid(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<GridOut>, ApiError> {
    Ok(Json(grid_of(&state, id).await?))
}

/// The resource grid and the triggers of one hook.
pub(crate) async fn grid_of(state: &AppState, id: String) -> Result<GridOut, ApiError> {
    let hook = load(state, id).await?;
    let tables = state
        .on_store(move |store| store.application_tables())
        .await?;
    let selected = |name: &str| hook.events.iter().any(|e| e == name);
    let resources = tables
        .into_iter()
        .map(|table| GridRow {
            create: selected(&resource_event_name(&table, "create")),
            update: selected(&resource_event_name(&table, "update")),
            delete: selected(&resource_event_name(&table, "delete")),
            resource: table,
        })
        .collect();
    let scripts = state.registry.current();
    let mut triggers: Vec<TriggerCell> = scripts
        .trigger_names()
        .iter()
        .map(|t| TriggerCell {
            trigger: t.clone(),
            selected: selected(t),
            available: true,
        })
        .collect();
    for event in &hook.events {
        if parse_resource_event(event).is_none() && scripts.body(event).is_none() {
            triggers.push(TriggerCell {
                trigger: event.clone(),
                selected: true,
                available: false,
            });
        }
    }
    Ok(GridOut {
        resources,
        triggers,
    })
}

async fn set_cell(
    state: AppState,
    id: String,
    event: String,
    selected: bool,
) -> Result<Json<CellOut>, ApiError> {
    if selected {
        checked_events(&state, vec![event.clone()]).await?;
    }
    let (hook_id, name) = (id.clone(), event.clone());
    state
        .on_store(move |store| store.set_hook_event(&hook_id, &name, selected))
        .await?
        .ok_or_else(|| unknown_hook(&id))?;
    if parse_resource_event(&event).is_some() {
        sync_tracking(&state).await?;
    }
    tracing::info!(hook_id = %id, %event, selected, "hook event selection changed");
    Ok(Json(CellOut {
        hook_id: id,
        event,
        selected,
    }))
}

fn checked_cell(resource: &str, action: &str) -> Result<String, ApiError> {
    if !RESOURCE_ACTIONS.contains(&action) {
        return Err(ApiError::not_found(
            "unknown_action",
            format!("no action '{action}': the actions are create, update and delete"),
        ));
    }
    Ok(resource_event_name(resource, action))
}

/// Ticks one cell of the grid: the hook receives `<resource>.<action>` from the next change on.
#[utoipa::path(put, path = "/api/v1/hooks/{id}/grid/{resource}/{action}", operation_id = "tickGridCell", description = "Selects one resource event (for example Deal update) for a hook.", tag = "hooks",
    params(
        ("id" = String, Path, description = "The hook's id"),
        ("resource" = String, Path, description = "A table of the application"),
        ("action" = String, Path, description = "create, update or delete"),
    ),
    responses(
        (status = 200, body = CellOut),
        (status = 404, description = "Unknown hook or action", body = ErrorBody),
        (status = 422, description = "Unknown resource", body = ErrorBody),
    ))]
pub async fn tick_cell(
    State(state): State<AppState>,
    Path((id, resource, action)): Path<(String, String, String)>,
) -> Result<Json<CellOut>, ApiError> {
    let event = checked_cell(&resource, &action)?;
    set_cell(state, id, event, true).await
}

/// Clears one cell of the grid: the next change is not delivered to this hook.
#[utoipa::path(delete, path = "/api/v1/hooks/{id}/grid/{resource}/{action}", operation_id = "clearGridCell", description = "Unselects one resource event of a hook.", tag = "hooks",
    params(
        ("id" = String, Path, description = "The hook's id"),
        ("resource" = String, Path, description = "A table of the application"),
        ("action" = String, Path, description = "create, update or delete"),
    ),
    responses((status = 200, body = CellOut), (status = 404, body = ErrorBody)))]
pub async fn clear_cell(
    State(state): State<AppState>,
    Path((id, resource, action)): Path<(String, String, String)>,
) -> Result<Json<CellOut>, ApiError> {
    let event = checked_cell(&resource, &action)?;
    set_cell(state, id, event, false).await
}

/// Selects a named trigger for the hook.
#[utoipa::path(put, path = "/api/v1/hooks/{id}/triggers/{trigger}", operation_id = "selectTrigger", description = "Selects a named trigger (a body script's suffix) for a hook.", tag = "hooks",
    params(
        ("id" = String, Path, description = "The hook's id"),
        ("trigger" = String, Path, description = "A trigger defined by a body script"),
    ),
    responses(
        (status = 200, body = CellOut),
        (status = 404, body = ErrorBody),
        (status = 422, description = "Unknown trigger", body = ErrorBody),
    ))]
pub async fn select_trigger(
    State(state): State<AppState>,
    Path((id, trigger)): Path<(String, String)>,
) -> Result<Json<CellOut>, ApiError> {
    if parse_resource_event(&trigger).is_some() {
        return Err(unprocessable(
            "unknown_event",
            "resource events are selected through /grid/{resource}/{action}",
        ));
    }
    set_cell(state, id, trigger, true).await
}

/// Stops the hook receiving a named trigger.
#[utoipa::path(delete, path = "/api/v1/hooks/{id}/triggers/{trigger}", operation_id = "unselectTrigger", description = "Unselects a named trigger of a hook.", tag = "hooks",
    params(
        ("id" = String, Path, description = "The hook's id"),
        ("trigger" = String, Path, description = "A trigger name"),
    ),
    responses((status = 200, body = CellOut), (status = 404, body = ErrorBody)))]
pub async fn unselect_trigger(
    State(state): State<AppState>,
    Path((id, trigger)): Path<(String, String)>,
) -> Result<Json<CellOut>, ApiError> {
    set_cell(state, id, trigger, false).await
}
