//! Events: what hooks receive. Two kinds, both stored with their payload rendered once, so that every
//! delivery and every retry sends the same bytes:
//!
//! - a **trigger event**, fired by a notification script (`trigger_webhook_event`), whose payload its
//!   body script builds;
//! - a **resource event** (`Deal.create`, `Deal.update`, `Deal.delete`), one cell of the resource grid,
//!   whose payload is an envelope around the changed row; no script is involved.
//!
//! Every event carries the scope of the row that changed (its company and project), which decides
//! which scoped hooks receive it.

use crate::clock::rfc3339_ms;
use crate::scripts::{Diagnostic, Sandbox, ScriptSet};
use crate::store::{Action, Change, NewEvent, ScriptDb, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("unknown trigger '{0}': there is no GetWebhookResponseBody_{0}.rhai")]
    UnknownTrigger(String),
    /// Shown with the offending line and a caret.
    #[error("{}", .0.render())]
    Script(Diagnostic),
}

/// The resource event types, in grid order.
pub const RESOURCE_ACTIONS: [&str; 3] = ["create", "update", "delete"];

/// `create`, `update` or `delete`: the event type of a change.
pub fn event_type(action: Action) -> &'static str {
    match action {
        Action::Insert => "create",
        Action::Update => "update",
        Action::Delete => "delete",
    }
}

/// `Deal.update`: the name hooks select a resource event by. Trigger names cannot contain a dot,
/// so the two never collide.
pub fn resource_event_name(table: &str, event_type: &str) -> String {
    format!("{table}.{event_type}")
}

/// `("Deal", "update")` for `Deal.update`; `None` for a trigger name.
pub fn parse_resource_event(name: &str) -> Option<(&str, &str)> {
    name.split_once('.')
}

/// The company and project a changed row belongs to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowScope {
    pub company_id: Option<i64>,
    pub project_id: Option<i64>,
}

/// Where a row belongs:
/// - its project is its `project_id` column, or, for a row of the `Project` table, the row itself;
/// - its company is its `company_id` column, or, for a row of the `Company` table, the row itself, or
///   else the `company_id` of its project in the `Project` table.
pub fn row_scope(change: &Change, db: &dyn ScriptDb) -> RowScope {
    let column = |name: &str| change.row.get(name).and_then(serde_json::Value::as_i64);
    let project_id = column("project_id").or_else(|| is_table(change, "Project"));
    let company_id = column("company_id")
        .or_else(|| is_table(change, "Company"))
        .or_else(|| project_id.and_then(|p| db.company_of_project(p)));
    RowScope {
        company_id,
        project_id,
    }
}

fn is_table(change: &Change, table: &str) -> Option<i64> {
    change
        .table
        .eq_ignore_ascii_case(table)
        .then_some(change.row_id)
}

/// Renders trigger `trigger` for `row_id` into an event ready to store. `change` is the change that
/// fired it (`None` when fired by hand); the event takes that change's resource and scope.
pub fn render_event(
    sandbox: &Sandbox,
    scripts: &ScriptSet,
    trigger: &str,
    row_id: i64,
    change: Option<(&Change, RowScope)>,
) -> Result<NewEvent, RenderError> {
    let script = scripts
        .body(trigger)
        .ok_or_else(|| RenderError::UnknownTrigger(trigger.to_owned()))?;
    let payload = sandbox
        .render(script, Some(row_id), change.map(|(c, _)| c))
        .map_err(RenderError::Script)?;
    let scope = change.map(|(_, s)| s).unwrap_or_default();
    Ok(NewEvent {
        id: crate::ids::event_id(),
        trigger: trigger.to_owned(),
        row_id: Some(row_id),
        payload,
        change_id: change.map(|(c, _)| c.id),
        script_hash: Some(script.hash.clone()),
        resource_name: change.map(|(c, _)| c.table.clone()),
        event_type: change.map(|(c, _)| event_type(c.action).to_owned()),
        company_id: scope.company_id,
        project_id: scope.project_id,
        judgements: Vec::new(),
    })
}

/// The resource event of a change, its payload the envelope:
///
/// ```json
/// {"id": "evt_...", "timestamp": "2026-11-24T10:00:00.123Z", "resource_name": "Deal",
///  "resource_id": 1000, "event_type": "update", "company_id": 1, "project_id": 10,
///  "row": {...}, "old_row": {...}}
/// ```
///
/// `row` is the row after the change (before it, for a delete); `old_row` the row before an update or
/// delete, `null` for a create.
pub fn resource_event(change: &Change, scope: RowScope) -> NewEvent {
    let id = crate::ids::event_id();
    let kind = event_type(change.action);
    let payload = serde_json::json!({
        "id": id,
        "timestamp": rfc3339_ms(change.changed_at),
        "resource_name": change.table,
        "resource_id": change.row_id,
        "event_type": kind,
        "company_id": scope.company_id,
        "project_id": scope.project_id,
        "row": change.row,
        "old_row": change.old_row,
    });
    NewEvent {
        trigger: resource_event_name(&change.table, kind),
        id,
        row_id: Some(change.row_id),
        payload: payload.to_string(),
        change_id: Some(change.id),
        script_hash: None,
        resource_name: Some(change.table.clone()),
        event_type: Some(kind.to_owned()),
        company_id: scope.company_id,
        project_id: scope.project_id,
        judgements: Vec::new(),
    }
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
    let mut samples = sandbox
        .samples(script, limit)
        .map_err(RenderError::Script)?;
    samples.truncate(limit);
    Ok(samples)
}

/// A sample of an event: its payload, and for a resource event the change it stands for.
#[derive(Debug, Clone)]
pub struct EventSample {
    pub event: NewEvent,
    pub change: Option<Change>,
}

/// Samples of `event` as hooks would receive it, newest first: perform-list's samples of a trigger
/// (at most `limit`), or the newest row of a resource event's table as that event. `Ok(Err(..))`
/// says, in words, why there is none (a failing body script, a table without rows).
pub fn event_samples(
    sandbox: &Sandbox,
    scripts: &ScriptSet,
    store: &Store,
    event: &str,
    limit: usize,
) -> Result<Result<Vec<EventSample>, String>, StoreError> {
    let Some((table, kind)) = parse_resource_event(event) else {
        let script = match scripts.body(event) {
            Some(script) => script,
            None => {
                return Ok(Err(
                    RenderError::UnknownTrigger(event.to_owned()).to_string()
                ))
            }
        };
        let payloads = match sample_payloads(sandbox, scripts, event, limit) {
            Ok(payloads) => payloads,
            Err(e) => return Ok(Err(e.to_string())),
        };
        return Ok(Ok(payloads
            .into_iter()
            .map(|payload| EventSample {
                event: NewEvent {
                    id: crate::ids::event_id(),
                    trigger: event.to_owned(),
                    row_id: payload.get("id").and_then(serde_json::Value::as_i64),
                    payload: payload.to_string(),
                    change_id: None,
                    script_hash: Some(script.hash.clone()),
                    resource_name: None,
                    event_type: None,
                    company_id: None,
                    project_id: None,
                    judgements: Vec::new(),
                },
                change: None,
            })
            .collect()));
    };
    let Some(action) = Action::ALL.into_iter().find(|a| event_type(*a) == kind) else {
        return Ok(Err(format!(
            "'{kind}' is not an event type: create, update or delete"
        )));
    };
    let Some((row_id, row)) = store.newest_row(table)? else {
        return Ok(Err(format!("the table {table} has no rows")));
    };
    let change = Change {
        id: 0,
        table: table.to_owned(),
        row_id,
        action,
        row: row.clone(),
        old_row: (action != Action::Insert).then_some(row),
        changed_at: crate::clock::now_ms(),
    };
    let scope_db = store.script_db()?;
    let mut event = resource_event(&change, row_scope(&change, &*scope_db));
    event.change_id = None;
    Ok(Ok(vec![EventSample {
        event,
        change: Some(change),
    }]))
}
