//! Events: a trigger fired for a row, rendered into its payload by the trigger's body script.
//!
//! The payload is rendered once, when the trigger fires, and stored: every delivery and every retry
//! sends those same bytes, and a row deleted since can still be described (its last state is in the
//! `change` a body script receives).

use crate::scripts::{Diagnostic, Sandbox, ScriptSet};
use crate::store::{Change, NewEvent};

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("unknown trigger '{0}': there is no GetWebhookResponseBody_{0}.rhai")]
    UnknownTrigger(String),
    /// Shown with the offending line and a caret.
    #[error("{}", .0.render())]
    Script(Diagnostic),
}

/// Renders trigger `trigger` for `row_id` into an event ready to store.
pub fn render_event(
    sandbox: &Sandbox,
    scripts: &ScriptSet,
    trigger: &str,
    row_id: i64,
    change: Option<&Change>,
) -> Result<NewEvent, RenderError> {
    let script = scripts
        .body(trigger)
        .ok_or_else(|| RenderError::UnknownTrigger(trigger.to_owned()))?;
    let payload = sandbox
        .render(script, Some(row_id), change)
        .map_err(RenderError::Script)?;
    Ok(NewEvent {
        trigger: trigger.to_owned(),
        row_id: Some(row_id),
        payload: payload.to_string(),
        change_id: change.map(|c| c.id),
        script_hash: Some(script.hash.clone()),
    })
}

/// The sample payloads of a trigger (the perform-list path), newest first, at most `limit`.
pub fn sample_payloads(
    sandbox: &Sandbox,
    scripts: &ScriptSet,
    trigger: &str,
    limit: usize,
) -> Result<Vec<serde_json::Value>, RenderError> {
    let script = scripts
        .body(trigger)
        .ok_or_else(|| RenderError::UnknownTrigger(trigger.to_owned()))?;
    let mut samples = sandbox.samples(script).map_err(RenderError::Script)?;
    samples.truncate(limit);
    Ok(samples)
}
