//! Backfills: a new integration wants the records that already exist. A backfill takes a trigger
//! and row ids (given, or read by a read-only query), renders the trigger's body script for each
//! row and queues the events for one hook only, in the order given, marked as backfill. For a
//! resource event (`Deal.create`, `Deal.update`) each row is sent as it is now, in the resource
//! event's envelope, with `old_row` null: nothing changed it, it is being introduced.
//!
//! `start` stores the row ids (in chunks, each its own short transaction) and hands the backfill
//! to the runner; `run` (on the node that consumes the change log, like the retention) takes
//! running backfills a step at a time: `STEP_ROWS` rows rendered in one read snapshot, their
//! events stored with the backfill's new position in one transaction (`Backfills`). So a step is
//! queued once whatever stops the process, a restart resumes at the position, the write lock is
//! held for one step at a time, and a hook never has more than `MAX_WAITING` deliveries waiting
//! because of a backfill: live events are not queued behind a million old ones, and the other
//! hooks' deliveries take their turns in the worker's claims as always.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::config::SandboxLimits;
use crate::events::{parse_resource_event, render_event, resource_event, row_scope, RenderError};
use crate::scripts::{Sandbox, ScriptRegistry};
use crate::store::{
    Action, Backfill, BackfillStep, Cell, Change, NewEvent, RowLimit, ScriptFailure, Store,
    StoreError,
};

/// Rows rendered and queued in one step (one transaction).
pub const STEP_ROWS: usize = 200;
/// The most rows one backfill takes.
pub const MAX_ROWS: usize = 1_000_000;
/// Rows stored per transaction while a backfill is prepared.
const ROWS_PER_WRITE: usize = 10_000;
/// A hook with this many deliveries waiting gets no more backfill until it drains.
const MAX_WAITING: u64 = 2_000;
/// How long a backfill's query may run.
const QUERY_BUDGET: Duration = Duration::from_secs(60);
/// How long the runner waits when nothing moved (no backfill, or each waits for its hook).
const IDLE: Duration = Duration::from_millis(250);

/// Which rows to backfill.
#[derive(Debug, Clone)]
pub enum BackfillRows {
    /// These ids, in this order.
    Ids(Vec<i64>),
    /// The ids a read-only query returns, in its order (its first column).
    Query(String),
}

/// Why a backfill cannot start, in words for the API's 422.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks `event` (a trigger with a body script), reads the rows, stores them and starts the
/// backfill. Blocks.
pub fn start(
    store: &Store,
    registry: &ScriptRegistry,
    hook_id: &str,
    hook_events: &[String],
    event: &str,
    rows: BackfillRows,
) -> Result<Backfill, BackfillError> {
    match parse_resource_event(event) {
        Some((table, "delete")) => {
            return Err(BackfillError::Invalid(format!(
                "'{event}': a row that exists cannot be sent as deleted; backfill \
                 {table}.create or {table}.update"
            )))
        }
        Some((_, "create" | "update")) => {}
        Some((_, kind)) => {
            return Err(BackfillError::Invalid(format!(
                "'{kind}' is not an event type a backfill sends: create or update"
            )))
        }
        None if registry.current().body(event).is_none() => {
            return Err(BackfillError::Invalid(
                RenderError::UnknownTrigger(event.to_owned()).to_string(),
            ));
        }
        None => {}
    }
    if !hook_events.iter().any(|e| e == event) {
        return Err(BackfillError::Invalid(format!(
            "the hook does not select '{event}'; it selects: {}",
            hook_events.join(", ")
        )));
    }
    let ids = match rows {
        BackfillRows::Ids(ids) => ids,
        BackfillRows::Query(sql) => query_ids(store, &sql)?,
    };
    if ids.is_empty() {
        return Err(BackfillError::Invalid(
            "no rows to backfill: the list or the query's result is empty".into(),
        ));
    }
    if ids.len() > MAX_ROWS {
        return Err(BackfillError::Invalid(format!(
            "{} rows: a backfill takes at most {MAX_ROWS}; split it",
            ids.len()
        )));
    }
    let backfill = store.create_backfill(hook_id, event, ids.len() as u64)?;
    for (chunk, part) in ids.chunks(ROWS_PER_WRITE).enumerate() {
        if let Err(e) = store.add_backfill_rows(&backfill.id, (chunk * ROWS_PER_WRITE) as u64, part)
        {
            let _ =
                store.fail_backfill(&backfill.id, &format!("its rows could not be stored: {e}"));
            return Err(e.into());
        }
    }
    store.start_backfill(&backfill.id)?;
    tracing::info!(backfill_id = %backfill.id, hook_id, event, rows = ids.len(), "backfill started");
    Ok(store
        .get_backfill(hook_id, &backfill.id)?
        .unwrap_or(backfill))
}

/// The ids a query returns, read as scripts read: read-only, within a time budget.
fn query_ids(store: &Store, sql: &str) -> Result<Vec<i64>, BackfillError> {
    let db = store.script_db()?;
    let deadline = Instant::now() + QUERY_BUDGET;
    db.set_interrupt_check(Box::new(move || Instant::now() > deadline));
    let rows = db
        .query(sql, &[], RowLimit::AtMost(MAX_ROWS))
        .map_err(|e| BackfillError::Invalid(format!("the query failed: {e}")))?;
    rows.values
        .into_iter()
        .enumerate()
        .map(|(n, row)| match row.into_iter().next() {
            Some(Cell::Integer(id)) => Ok(id),
            other => Err(BackfillError::Invalid(format!(
                "the query must return row ids (whole numbers) in its first column; row {} has {}",
                n + 1,
                match other {
                    None => "no column".to_owned(),
                    Some(Cell::Null) => "null".to_owned(),
                    Some(cell) => format!("{cell:?}"),
                }
            ))),
        })
        .collect()
}

/// Runs the backfills, a step at a time, while this node consumes the change log, until
/// `shutdown`.
pub async fn run(
    store: Store,
    registry: Arc<ScriptRegistry>,
    limits: SandboxLimits,
    consumer: Arc<AtomicBool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut sandbox: Option<Sandbox> = None;
    loop {
        let moved = if consumer.load(Ordering::SeqCst) {
            let (store, registry, limits) = (store.clone(), registry.clone(), limits.clone());
            let mut held = sandbox.take();
            let stepped = tokio::task::spawn_blocking(move || {
                let sandbox = match held.take() {
                    Some(sandbox) => sandbox,
                    None => Sandbox::new(&limits, store.script_db()?),
                };
                let moved = step_all(&store, &registry, &sandbox);
                Ok::<_, StoreError>((sandbox, moved))
            })
            .await;
            match stepped {
                Ok(Ok((kept, moved))) => {
                    sandbox = Some(kept);
                    moved.unwrap_or_else(|e| {
                        tracing::warn!("backfill step failed: {e}; trying again");
                        false
                    })
                }
                Ok(Err(e)) => {
                    tracing::warn!("cannot run backfills yet: {e}");
                    false
                }
                Err(_) => return,
            }
        } else {
            false
        };
        let pause = if moved {
            Duration::from_millis(1)
        } else {
            IDLE
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One step of each running backfill whose hook has room; whether any moved.
fn step_all(
    store: &Store,
    registry: &ScriptRegistry,
    sandbox: &Sandbox,
) -> Result<bool, StoreError> {
    let mut moved = false;
    for backfill in store.running_backfills()? {
        moved |= step(store, registry, sandbox, &backfill)?;
    }
    Ok(moved)
}

fn step(
    store: &Store,
    registry: &ScriptRegistry,
    sandbox: &Sandbox,
    backfill: &Backfill,
) -> Result<bool, StoreError> {
    let Some(hook) = store.get_hook(&backfill.hook_id)? else {
        store.fail_backfill(&backfill.id, "the hook was deleted")?;
        return Ok(false);
    };
    if !hook.enabled || store.hook_waiting(&hook.id)? >= MAX_WAITING {
        // Disabled: it waits to be enabled again. Busy: it waits for the hook to drain.
        return Ok(false);
    }
    let scripts = registry.current();
    let resource = parse_resource_event(&backfill.event_name);
    if resource.is_none() && scripts.body(&backfill.event_name).is_none() {
        store.fail_backfill(
            &backfill.id,
            &RenderError::UnknownTrigger(backfill.event_name.clone()).to_string(),
        )?;
        return Ok(false);
    }
    let rows = store.backfill_rows(&backfill.id, backfill.done, STEP_ROWS)?;
    if rows.is_empty() {
        store.fail_backfill(&backfill.id, "its remaining rows are missing")?;
        return Ok(false);
    }
    let (events, failures) = match resource {
        Some((table, kind)) => resource_events(store, backfill, table, kind, &rows)?,
        None => rendered_events(sandbox, &scripts, backfill, &rows),
    };
    if sandbox.take_database_unavailable() {
        // Failed for the database, not for what the script does: the step runs again.
        return Ok(false);
    }
    let through = backfill.done + rows.len() as u64;
    let stored = store.record_backfill_step(&BackfillStep {
        backfill_id: &backfill.id,
        hook_id: &hook.id,
        from: backfill.done,
        through,
        events: &events,
        failures: &failures,
    })?;
    if stored && through >= backfill.total {
        tracing::info!(backfill_id = %backfill.id, hook_id = %hook.id, rows = backfill.total, failed = backfill.failed + failures.len() as u64, "backfill done");
    }
    Ok(stored)
}

/// A step's rows rendered by the trigger's body script, in one read snapshot.
fn rendered_events(
    sandbox: &Sandbox,
    scripts: &crate::scripts::ScriptSet,
    backfill: &Backfill,
    rows: &[i64],
) -> (Vec<NewEvent>, Vec<ScriptFailure>) {
    sandbox.in_one_snapshot(|| {
        let mut events = Vec::with_capacity(rows.len());
        let mut failures = Vec::new();
        for &row_id in rows {
            match render_event(sandbox, scripts, &backfill.event_name, row_id, None) {
                Ok(event) => events.push(event),
                Err(error) => {
                    let (script, position, message) = match error {
                        RenderError::Script(d) => (d.file, d.position, d.message),
                        other => (backfill.event_name.clone(), None, other.to_string()),
                    };
                    failures.push(ScriptFailure {
                        script,
                        line: position.map(|p| p.0),
                        col: position.map(|p| p.1),
                        message: format!("backfill {}: {message}", backfill.id),
                        trigger: Some(backfill.event_name.clone()),
                        table: None,
                        row_id: Some(row_id),
                        change_id: None,
                    });
                }
            }
        }
        (events, failures)
    })
}

/// A step's rows as the resource event `table.kind`, each as it is now; a row deleted since the
/// backfill started is a failure of its own.
fn resource_events(
    store: &Store,
    backfill: &Backfill,
    table: &str,
    kind: &str,
    rows: &[i64],
) -> Result<(Vec<NewEvent>, Vec<ScriptFailure>), StoreError> {
    let action = if kind == "update" {
        Action::Update
    } else {
        Action::Insert
    };
    let found: std::collections::HashMap<i64, serde_json::Value> =
        store.rows_by_id(table, rows)?.into_iter().collect();
    let scope_db = store.script_db()?;
    let now = crate::clock::now_ms();
    let mut events = Vec::with_capacity(rows.len());
    let mut failures = Vec::new();
    for &row_id in rows {
        let Some(row) = found.get(&row_id) else {
            failures.push(ScriptFailure {
                script: backfill.event_name.clone(),
                line: None,
                col: None,
                message: format!(
                    "backfill {}: {table} has no row {row_id} (deleted since the backfill started?)",
                    backfill.id
                ),
                trigger: Some(backfill.event_name.clone()),
                table: Some(table.to_owned()),
                row_id: Some(row_id),
                change_id: None,
            });
            continue;
        };
        let change = Change {
            id: 0,
            table: table.to_owned(),
            row_id,
            action,
            row: row.clone(),
            old_row: None,
            changed_at: now,
        };
        let mut event = resource_event(&change, row_scope(&change, &*scope_db));
        event.change_id = None;
        events.push(event);
    }
    Ok((events, failures))
}
