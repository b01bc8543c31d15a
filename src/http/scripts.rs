//! `GET /api/v1/scripts`: what the scripts folder holds, which version of each script is live, what
//! failed to compile (with line, column and the offending line), and which subscribed triggers have
//! lost their body script.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::{ApiError, AppState};
use crate::clock::rfc3339_ms;
use crate::events::parse_resource_event;
use crate::scripts::{Diagnostic, ScriptEntry, ScriptKind};

#[derive(Serialize, ToSchema)]
pub struct ScriptsOut {
    pub(crate) folder: String,
    pub(crate) loaded_at: String,
    pub(crate) scripts: Vec<ScriptOut>,
    /// The triggers defined by body scripts: what can be subscribed to.
    pub(crate) triggers: Vec<String>,
    pub(crate) tracked_tables: Vec<String>,
    /// Triggers that hooks receive but no body script defines any more.
    pub(crate) missing_triggers: Vec<MissingTrigger>,
}

#[derive(Serialize, ToSchema)]
pub struct ScriptOut {
    pub(crate) file: String,
    /// `body`, `notification`, or `null` for a file whose name is not a script name.
    pub(crate) kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) trigger: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) table: Option<String>,
    /// `ok`: the file on disk is live. `error`: it is not; when `hash` is set, an earlier version is.
    pub(crate) status: &'static str,
    /// The content hash of the live version, as events record it.
    pub(crate) hash: Option<String>,
    pub(crate) error: Option<ErrorOut>,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorOut {
    pub(crate) line: Option<u32>,
    pub(crate) column: Option<u32>,
    pub(crate) message: String,
    pub(crate) source_line: Option<String>,
    /// `file:line:col: message`, the offending line and a caret under the column.
    pub(crate) text: String,
}

impl From<&Diagnostic> for ErrorOut {
    fn from(d: &Diagnostic) -> ErrorOut {
        ErrorOut {
            line: d.line(),
            column: d.column(),
            message: d.message.clone(),
            source_line: d.source_line.clone(),
            text: d.render(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct MissingTrigger {
    pub(crate) trigger: String,
    pub(crate) hooks: usize,
}

fn script_out(entry: &ScriptEntry<'_>) -> ScriptOut {
    let (kind, trigger, table) = match &entry.kind {
        Some(ScriptKind::Body { trigger }) => (Some("body"), Some(trigger.clone()), None),
        Some(ScriptKind::Notification { table }) => {
            (Some("notification"), None, Some(table.clone()))
        }
        Some(ScriptKind::Filter) | None => (None, None, None),
    };
    ScriptOut {
        file: entry.file_name.to_owned(),
        kind,
        trigger,
        table,
        status: if entry.error.is_some() { "error" } else { "ok" },
        hash: entry.live.map(|s| s.hash.clone()),
        error: entry.error.map(ErrorOut::from),
    }
}

/// The scripts folder: what is live, what failed to compile, which subscribed triggers are missing.
#[utoipa::path(get, path = "/api/v1/scripts", operation_id = "listScripts", description = "The scripts folder as herald loaded it: each script, its hash and its compile errors with line and column.", tag = "scripts", responses((status = 200, body = ScriptsOut)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<ScriptsOut>, ApiError> {
    Ok(Json(scripts_overview(&state).await?))
}

pub(crate) async fn scripts_overview(state: &AppState) -> Result<ScriptsOut, ApiError> {
    let scripts = state.registry.current();
    let subscribed = state.on_store(move |store| store.hooks_per_event()).await?;
    let triggers = scripts.trigger_names();
    Ok(ScriptsOut {
        folder: scripts.folder.display().to_string(),
        loaded_at: rfc3339_ms(scripts.loaded_at),
        scripts: scripts.entries().iter().map(script_out).collect(),
        triggers: triggers.iter().cloned().collect(),
        tracked_tables: scripts.tracked_tables(),
        missing_triggers: subscribed
            .into_iter()
            .filter(|(name, _)| parse_resource_event(name).is_none() && !triggers.contains(name))
            .map(|(trigger, hooks)| MissingTrigger { trigger, hooks })
            .collect(),
    })
}
