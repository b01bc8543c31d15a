//! `GET /api/v1/triggers`: everything a hook can select. The named triggers of the body scripts,
//! each with its script, compile status and a sample payload (the perform-list path), and the
//! resource events of every application table, each with a sample envelope built from the table's
//! newest row.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::openapi::ErrorBody;
use super::scripts::ErrorOut;
use super::{blocking, ApiError, AppQuery, AppState};
use crate::events::{
    resource_event, resource_event_name, row_scope, sample_payloads, RESOURCE_ACTIONS,
};
use crate::store::{Action, Change};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CatalogueQuery {
    /// `false` leaves the samples out (they run every body script).
    #[param(value_type = Option<bool>)]
    pub(crate) samples: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CatalogueOut {
    pub(crate) triggers: Vec<TriggerOut>,
    pub(crate) resource_events: Vec<ResourceEventOut>,
}

#[derive(Serialize, ToSchema)]
pub struct TriggerOut {
    pub(crate) name: String,
    /// The body script that defines it.
    pub(crate) script: String,
    /// `ok`, or `error` when the file on disk does not compile (an earlier version stays live).
    pub(crate) status: &'static str,
    /// The content hash of the live version.
    pub(crate) hash: String,
    pub(crate) error: Option<ErrorOut>,
    /// How many hooks select it.
    pub(crate) hooks: usize,
    /// The newest sample payload, as perform-list returns it.
    #[schema(value_type = Option<Object>)]
    pub(crate) sample: Option<Value>,
    /// Why there is no sample, when the body script failed.
    pub(crate) sample_error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ResourceEventOut {
    /// `Deal.create`: what a hook selects.
    pub(crate) name: String,
    pub(crate) resource: String,
    /// create, update or delete.
    pub(crate) event_type: &'static str,
    pub(crate) hooks: usize,
    /// An envelope around the table's newest row.
    #[schema(value_type = Option<Object>)]
    pub(crate) sample: Option<Value>,
}

/// Every trigger and resource event.
#[utoipa::path(get, path = "/api/v1/triggers", operation_id = "listTriggers", description = "The triggers (from GetWebhookResponseBody_*.rhai) and the resources of the grid (the application's tables) a hook can select.", tag = "catalogue", params(CatalogueQuery),
    responses((status = 200, body = CatalogueOut), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    AppQuery(query): AppQuery<CatalogueQuery>,
) -> Result<Json<CatalogueOut>, ApiError> {
    let with_samples = match query.samples.as_deref().map(str::trim) {
        None | Some("") | Some("true") | Some("1") => true,
        Some("false") | Some("0") => false,
        Some(other) => {
            return Err(ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "invalid_query",
                format!("samples must be true or false, not '{other}'"),
            ))
        }
    };
    Ok(Json(catalogue(&state, with_samples).await?))
}

/// Every trigger and resource event, with sample payloads when `with_samples`.
pub(crate) async fn catalogue(
    state: &AppState,
    with_samples: bool,
) -> Result<CatalogueOut, ApiError> {
    let scripts = state.registry.current();
    let store = state.store.clone();
    let sandboxes = state.sandboxes.clone();
    blocking(move || {
        {
            let counts: std::collections::HashMap<String, usize> =
                store.hooks_per_event()?.into_iter().collect();
            let entries = scripts.entries();
            let mut triggers = Vec::new();
            for name in scripts.trigger_names().iter() {
                let script = scripts.body(name).expect("a trigger has its body script");
                let error = entries
                    .iter()
                    .find(|e| e.file_name == script.file_name)
                    .and_then(|e| e.error)
                    .map(ErrorOut::from);
                let (sample, sample_error) = if with_samples {
                    match sandboxes.with(|sandbox| sample_payloads(sandbox, &scripts, name, 1))? {
                        Ok(mut samples) => (samples.pop(), None),
                        Err(e) => (None, Some(e.to_string())),
                    }
                } else {
                    (None, None)
                };
                triggers.push(TriggerOut {
                    name: name.clone(),
                    script: script.file_name.clone(),
                    status: if error.is_some() { "error" } else { "ok" },
                    hash: script.hash.clone(),
                    error,
                    hooks: counts.get(name).copied().unwrap_or(0),
                    sample,
                    sample_error,
                });
            }
            let scope_db = store.script_db()?;
            let mut resource_events = Vec::new();
            for table in store.application_tables()? {
                let newest = if with_samples {
                    store.newest_row(&table)?
                } else {
                    None
                };
                for (action, event_type) in [Action::Insert, Action::Update, Action::Delete]
                    .into_iter()
                    .zip(RESOURCE_ACTIONS)
                {
                    let sample = newest.as_ref().map(|(row_id, row)| {
                        let change = Change {
                            id: 0,
                            table: table.clone(),
                            row_id: *row_id,
                            action,
                            row: row.clone(),
                            old_row: (action != Action::Insert).then(|| row.clone()),
                            changed_at: crate::clock::now_ms(),
                        };
                        let event = resource_event(&change, row_scope(&change, &*scope_db));
                        serde_json::from_str(&event.payload).unwrap_or(Value::Null)
                    });
                    let name = resource_event_name(&table, event_type);
                    resource_events.push(ResourceEventOut {
                        hooks: counts.get(&name).copied().unwrap_or(0),
                        name,
                        resource: table.clone(),
                        event_type,
                        sample,
                    });
                }
            }
            Ok::<_, crate::store::StoreError>(CatalogueOut {
                triggers,
                resource_events,
            })
        }
        .map_err(ApiError::from)
    })
    .await
}
