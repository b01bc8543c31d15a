//! The sandbox: one rhai engine with every limit set, the host functions of the contract, and the
//! two ways to run a script (a notification for a change, a body for an event).
//!
//! A [`Sandbox`] belongs to one thread at a time and owns its read-only database connection; the
//! host functions reach that connection and the list of fired triggers through [`RunState`].

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rhai::{Array, Dynamic, Engine, EvalAltResult, Map, Scope};

use super::snapshot_answers::SnapshotAnswers;
use super::{Diagnostic, Script};
use crate::config::SandboxLimits;
use crate::store::{Action, Cell, Change, HeldEvent, RowLimit, Rows, ScriptDb, Store, StoreError};

/// A trigger fired by a notification script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    pub trigger: String,
    pub row_id: i64,
}

/// The wall-clock deadline of the current run, shared by the engine's progress callback and the
/// database connection's progress handler.
struct Deadline {
    epoch: Instant,
    /// Nanoseconds after `epoch`; `u64::MAX` when no run is active.
    until: AtomicU64,
}

impl Deadline {
    fn start(&self, budget: Duration) {
        let until = self.epoch.elapsed() + budget;
        self.until.store(
            until.as_nanos().min(u64::MAX as u128) as u64,
            Ordering::Relaxed,
        );
    }

    fn passed(&self) -> bool {
        self.epoch.elapsed().as_nanos() as u64 > self.until.load(Ordering::Relaxed)
    }

    /// What is left of the current run's budget.
    fn left(&self) -> Duration {
        let until = Duration::from_nanos(self.until.load(Ordering::Relaxed));
        until.saturating_sub(self.epoch.elapsed())
    }
}

/// What host functions need during one run.
struct RunState {
    db: Mutex<Box<dyn ScriptDb>>,
    deadline: Arc<Deadline>,
    /// Only notification scripts may fire triggers.
    may_fire: AtomicBool,
    fired: Mutex<Vec<Fired>>,
    known_triggers: Mutex<Arc<BTreeSet<String>>>,
    /// The script running now, to tag `print` and `debug` lines.
    script: Mutex<String>,
    max_rows: usize,
    /// The most events one run may fire (`sandbox.max_events_per_change`).
    max_events: usize,
    /// Set when a query found the database unreachable (see `take_database_unavailable`).
    unavailable: AtomicBool,
    /// While a snapshot is read: the answers of its queries, asked once each.
    answers: Mutex<Option<SnapshotAnswers>>,
}

fn runtime_error(message: String) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(
        message.into(),
        rhai::Position::NONE,
    ))
}

rhai::def_package! {
    /// What scripts may call of rhai's standard library: all of it but the language-core package,
    /// whose `sleep` blocks the thread (the tracker's, a request's) past every budget, since no
    /// operation is counted while it waits. Of that package, `parse_json` is given back below.
    /// The functions of the engine are listed against `allowed_functions.txt` in a test, so that
    /// a rhai upgrade cannot bring a blocking function back unseen.
    ScriptLibrary(lib):
        rhai::packages::ArithmeticPackage,
        rhai::packages::BasicStringPackage,
        rhai::packages::BasicIteratorPackage,
        rhai::packages::BasicFnPackage,
        rhai::packages::BitFieldPackage,
        rhai::packages::LogicPackage,
        rhai::packages::BasicMathPackage,
        rhai::packages::BasicArrayPackage,
        rhai::packages::BasicBlobPackage,
        rhai::packages::BasicMapPackage,
        rhai::packages::BasicTimePackage,
        rhai::packages::MoreStringPackage
    {}
}

/// An engine with every limit set explicitly (rhai's defaults differ between debug and release
/// builds), no `eval`, no modules (the `no_module` feature), no function that waits, strict
/// variables, and errors for missing map properties so that `row.titel` fails loudly instead of
/// yielding `()`.
pub fn build_engine(limits: &SandboxLimits) -> Engine {
    use rhai::packages::Package;

    let mut engine = Engine::new_raw();
    engine.register_global_module(ScriptLibrary::new().as_shared_module());
    engine.register_fn(
        "parse_json",
        |context: rhai::NativeCallContext, json: &str| -> Result<Map, Box<EvalAltResult>> {
            context.engine().parse_json(json, true)
        },
    );
    engine
        .set_max_strings_interned(256)
        .set_max_operations(limits.max_operations)
        .set_max_call_levels(limits.max_call_levels)
        .set_max_expr_depths(limits.max_expr_depth, limits.max_expr_depth)
        .set_max_string_size(limits.max_string_size)
        .set_max_array_size(limits.max_array_size)
        .set_max_map_size(limits.max_map_size)
        .set_max_variables(1_000)
        .set_max_functions(256)
        .set_strict_variables(true)
        .set_fail_on_invalid_map_property(true);
    engine.disable_symbol("eval");
    // Until a run installs its own, print and debug go to the log untagged rather than to stdout.
    engine.on_print(|text| tracing::info!(target: "herald::script", "{text}"));
    engine.on_debug(|text, source, _| {
        tracing::debug!(target: "herald::script", script = source.unwrap_or(""), "{text}")
    });
    engine
}

pub struct Sandbox {
    engine: Engine,
    state: Arc<RunState>,
    limits: SandboxLimits,
}

impl Sandbox {
    pub fn new(limits: &SandboxLimits, db: Box<dyn ScriptDb>) -> Sandbox {
        let deadline = Arc::new(Deadline {
            epoch: Instant::now(),
            until: AtomicU64::new(u64::MAX),
        });
        {
            let deadline = deadline.clone();
            db.set_interrupt_check(Box::new(move || deadline.passed()));
        }
        let state = Arc::new(RunState {
            db: Mutex::new(db),
            deadline,
            may_fire: AtomicBool::new(false),
            fired: Mutex::new(Vec::new()),
            known_triggers: Mutex::new(Arc::default()),
            script: Mutex::new(String::new()),
            max_rows: limits.max_array_size,
            max_events: limits.max_events_per_change,
            unavailable: AtomicBool::new(false),
            answers: Mutex::new(None),
        });
        let mut engine = build_engine(limits);
        register_host_functions(&mut engine, &state);
        Sandbox {
            engine,
            state,
            limits: limits.clone(),
        }
    }

    /// Runs `f` with every query of the scripts it runs reading one snapshot of the database, taken
    /// at the first query: one read transaction for a batch of changes rather than one per query.
    /// Without a snapshot (it could not begin) the queries read as usual, each on its own.
    pub fn in_one_snapshot<T>(&self, f: impl FnOnce() -> T) -> T {
        match lock(&self.state.db).begin_snapshot() {
            Ok(()) => self.remember_answers(true),
            Err(e) => tracing::warn!("cannot begin a read snapshot for scripts: {e}"),
        }
        let result = f();
        self.remember_answers(false);
        if let Err(e) = lock(&self.state.db).end_snapshot() {
            tracing::warn!("cannot end the scripts' read snapshot: {e}");
        }
        result
    }

    /// Within a snapshot a query's answer cannot change: remember them (`SnapshotAnswers`), and
    /// forget them when it ends.
    fn remember_answers(&self, remember: bool) {
        *lock(&self.state.answers) = remember.then(SnapshotAnswers::default);
    }

    /// Within a snapshot: the changes (table, row id) whose scripts this sandbox runs next, in
    /// order, the first now; `next_row` moves on. A query one of them asks with its row id is
    /// asked for the next ones of its table at once (`SnapshotAnswers`).
    /// Kept only where the database asks ahead: on SQLite it would be work for nothing.
    pub fn expect_rows<'a>(&self, rows: impl IntoIterator<Item = (&'a str, i64)>) {
        if !lock(&self.state.db).asks_ahead() {
            return;
        }
        if let Some(answers) = lock(&self.state.answers).as_mut() {
            answers.expect_rows(rows.into_iter().map(|(t, id)| (t.to_owned(), id)).collect());
        }
    }

    /// The scripts of the current change (`expect_rows`) are done.
    pub fn next_row(&self) {
        if let Some(answers) = lock(&self.state.answers).as_mut() {
            answers.next_row();
        }
    }

    /// `in_one_snapshot` for several sandboxes at once: the first takes the snapshot and shares
    /// it, and `f` gets, for each sandbox, whether it reads that snapshot. `None` when the database
    /// cannot share one (`f` is not run): use one sandbox.
    pub fn in_a_shared_snapshot<T>(sandboxes: &[&Sandbox], f: impl FnOnce() -> T) -> Option<T> {
        let (leader, others) = sandboxes.split_first()?;
        let db = |sandbox: &Sandbox| lock(&sandbox.state.db).begin_snapshot();
        if let Err(e) = db(leader) {
            tracing::warn!("cannot begin a read snapshot for scripts: {e}");
            return None;
        }
        // Bound first: a guard in the match's scrutinee would live through the arms, which lock
        // the same connection again.
        let sharing = lock(&leader.state.db).share_snapshot();
        let shared = match sharing {
            Ok(Some(shared)) => shared,
            Ok(None) => {
                let _ = lock(&leader.state.db).end_snapshot();
                return None;
            }
            Err(e) => {
                tracing::warn!("cannot share the scripts' read snapshot: {e}");
                let _ = lock(&leader.state.db).end_snapshot();
                return None;
            }
        };
        let mut joined = Vec::new();
        for other in others {
            let joining = lock(&other.state.db).join_snapshot(&shared);
            match joining {
                Ok(()) => joined.push(*other),
                Err(e) => {
                    tracing::warn!("cannot join the scripts' shared read snapshot: {e}");
                    for sandbox in joined.iter().chain([leader]) {
                        let _ = lock(&sandbox.state.db).end_snapshot();
                    }
                    return None;
                }
            }
        }
        for sandbox in joined.iter().chain([leader]) {
            sandbox.remember_answers(true);
        }
        let result = f();
        // The leader last: its transaction holds the snapshot the others read.
        for sandbox in joined.iter().chain([leader]) {
            sandbox.remember_answers(false);
            if let Err(e) = lock(&sandbox.state.db).end_snapshot() {
                tracing::warn!("cannot end the scripts' read snapshot: {e}");
            }
        }
        Some(result)
    }

    /// Whether a query found the database unreachable since the last call: the scripts that
    /// failed then failed for the database, not for what they do, and their changes are to be
    /// read again rather than consumed with failures.
    pub fn take_database_unavailable(&self) -> bool {
        self.state.unavailable.swap(false, Ordering::SeqCst)
    }

    /// Runs a notification script for one change and returns the triggers it fired. A script that
    /// fails fires nothing: its partial work is dropped with the error.
    pub fn run_notification(
        &self,
        script: &Script,
        change: &Change,
        known_triggers: &Arc<BTreeSet<String>>,
    ) -> Result<Vec<Fired>, Diagnostic> {
        *lock(&self.state.known_triggers) = known_triggers.clone();
        lock(&self.state.fired).clear();
        let mut scope = Scope::new();
        scope.push_constant("table", change.table.clone());
        scope.push_constant("row_id", change.row_id);
        scope.push_constant("action", change.action.code());
        scope.push_constant("action_key", change.action.key());
        scope.push_constant_dynamic("row", json_to_dynamic(&change.row));
        scope.push_constant_dynamic(
            "old_row",
            change
                .old_row
                .as_ref()
                .map_or(Dynamic::UNIT, json_to_dynamic),
        );
        self.state.may_fire.store(true, Ordering::Relaxed);
        let result = self.eval(script, &mut scope);
        self.state.may_fire.store(false, Ordering::Relaxed);
        let fired = std::mem::take(&mut *lock(&self.state.fired));
        result.map(|_| fired)
    }

    /// Runs a body script for one event: the payload, a JSON object.
    pub fn render(
        &self,
        script: &Script,
        row_id: Option<i64>,
        change: Option<&Change>,
    ) -> Result<String, Diagnostic> {
        let mut scope = body_scope(row_id, None, change);
        let value = self.eval(script, &mut scope)?;
        if !value.is_map() {
            return Err(Diagnostic::new(
                &script.file_name,
                None,
                format!(
                    "a body script must return a map (the payload), not {}",
                    value.type_name()
                ),
            ));
        }
        // Straight to text: the payload is stored as text, and a map converts the same either way.
        let payload = serde_json::to_string(&value).map_err(|e| unconvertible(script, e))?;
        self.check_payload_size(script, payload.len())?;
        Ok(payload)
    }

    /// Runs a body script in sample mode: the payloads perform-list returns, newest first.
    /// Perform-list's samples: the script runs with `sample` true and `limit`, the most wanted.
    pub fn samples(
        &self,
        script: &Script,
        limit: usize,
    ) -> Result<Vec<serde_json::Value>, Diagnostic> {
        let mut scope = body_scope(None, Some(limit), None);
        let value = self.eval(script, &mut scope)?;
        let items = match self.to_json(script, &value)? {
            serde_json::Value::Array(items) if items.iter().all(|i| i.is_object()) => items,
            object @ serde_json::Value::Object(_) => vec![object],
            _ => {
                return Err(Diagnostic::new(
                    &script.file_name,
                    None,
                    format!(
                        "with `sample` true a body script must return an array of maps (or one map), not {}",
                        value.type_name()
                    ),
                ))
            }
        };
        for item in &items {
            self.check_payload_size(script, item.to_string().len())?;
        }
        Ok(items)
    }

    /// Compiles a hook's filter with this sandbox's engine.
    pub fn compile_filter(&self, source: &str) -> Result<Script, Diagnostic> {
        super::compile_filter(&self.engine, source)
    }

    /// Runs a hook's filter on an event: whether it lets the event through. A value that is not a
    /// boolean is an error, as is any failure: neither may silently drop or send the event.
    pub fn judge(&self, filter: &Script, input: &FilterInput) -> Result<bool, Diagnostic> {
        let mut scope = Scope::new();
        scope.push_constant_dynamic("payload", input.payload.clone());
        scope.push_constant("event", input.event.clone());
        scope.push_constant_dynamic("change", input.change.clone());
        let value = self.eval(filter, &mut scope)?;
        value.as_bool().map_err(|type_name| {
            Diagnostic::new(
                &filter.file_name,
                returned_at(&filter.source),
                format!("a filter must return true or false, not {type_name}"),
            )
            .with_source(&filter.source)
        })
    }

    fn check_payload_size(&self, script: &Script, bytes: usize) -> Result<(), Diagnostic> {
        let cap = self.limits.max_payload_bytes;
        if bytes > cap {
            return Err(Diagnostic::new(
                &script.file_name,
                returned_at(&script.source),
                format!(
                    "the payload is {bytes} bytes of JSON, over the cap of {cap} bytes \
                     (sandbox.max_payload_bytes): send less, or an id the receiver can look up"
                ),
            )
            .with_source(&script.source));
        }
        Ok(())
    }

    fn eval(&self, script: &Script, scope: &mut Scope<'_>) -> Result<Dynamic, Diagnostic> {
        *lock(&self.state.script) = script.file_name.clone();
        self.state.deadline.start(self.limits.time_budget);
        let result = self
            .engine
            .eval_ast_with_scope::<Dynamic>(scope, &script.ast);
        self.state.deadline.until.store(u64::MAX, Ordering::Relaxed);
        result.map_err(|e| {
            Diagnostic::from_eval_error(&script.file_name, &e, || {
                format!(
                    "the script ran past its time budget of {} ms",
                    self.limits.time_budget.as_millis()
                )
            })
            .with_source(&script.source)
        })
    }

    fn to_json(&self, script: &Script, value: &Dynamic) -> Result<serde_json::Value, Diagnostic> {
        serde_json::to_value(value).map_err(|e| unconvertible(script, e))
    }
}

/// Where a script's value comes from, for errors about the value itself: the start of its last line
/// of code (rhai keeps statement positions internal, and the returned map ends there).
fn returned_at(source: &str) -> Option<(u32, u32)> {
    source
        .lines()
        .enumerate()
        .filter(|(_, line)| {
            let code = line.trim();
            !code.is_empty() && !code.starts_with("//")
        })
        .last()
        .map(|(index, line)| {
            let indent = line.len() - line.trim_start().len();
            (index as u32 + 1, indent as u32 + 1)
        })
}

fn unconvertible(script: &Script, error: serde_json::Error) -> Diagnostic {
    Diagnostic::new(
        &script.file_name,
        None,
        format!("the returned value cannot be turned into JSON: {error}"),
    )
}

/// A body script's scope: `limit` is set (and `sample` true) for perform-list only.
fn body_scope(
    row_id: Option<i64>,
    limit: Option<usize>,
    change: Option<&Change>,
) -> Scope<'static> {
    let mut scope = Scope::new();
    scope.push_constant_dynamic("row_id", row_id.map_or(Dynamic::UNIT, Dynamic::from_int));
    scope.push_constant("sample", limit.is_some());
    scope.push_constant_dynamic(
        "limit",
        limit.map_or(Dynamic::UNIT, |n| Dynamic::from_int(n as i64)),
    );
    scope.push_constant_dynamic("change", change.map_or(Dynamic::UNIT, change_to_dynamic));
    scope
}

/// What a hook's filter sees: the event's payload (a map), its name, and the change that fired it.
#[derive(Debug, Clone)]
pub struct FilterInput {
    pub payload: Dynamic,
    pub event: String,
    pub change: Dynamic,
}

impl FilterInput {
    /// An event about to be stored, with the change that fired it (`None`: fired by hand).
    pub fn fresh(event_name: &str, payload: &str, change: Option<&Change>) -> FilterInput {
        FilterInput {
            payload: payload_to_dynamic(payload),
            event: event_name.to_owned(),
            change: change.map_or(Dynamic::UNIT, change_to_dynamic),
        }
    }

    /// A stored event judged again. Its change is gone from the log: `change` is rebuilt from what
    /// the event kept (table, row id, action; `row` and `old_row` from a resource event's
    /// envelope, `()` for a trigger's).
    pub fn stored(held: &HeldEvent) -> FilterInput {
        let payload: serde_json::Value =
            serde_json::from_str(&held.payload).unwrap_or(serde_json::Value::Null);
        let change = match (&held.resource_name, &held.event_type) {
            (Some(table), Some(event_type)) => {
                let action = Action::ALL
                    .into_iter()
                    .find(|a| crate::events::event_type(*a) == event_type);
                let mut map = Map::new();
                map.insert("table".into(), table.clone().into());
                map.insert(
                    "row_id".into(),
                    held.row_id.map_or(Dynamic::UNIT, Dynamic::from_int),
                );
                map.insert(
                    "action".into(),
                    action.map_or(Dynamic::UNIT, |a| a.code().into()),
                );
                map.insert(
                    "action_key".into(),
                    action.map_or(Dynamic::UNIT, |a| a.key().into()),
                );
                for field in ["row", "old_row"] {
                    let value = if held.event_name.contains('.') {
                        payload.get(field).map_or(Dynamic::UNIT, json_to_dynamic)
                    } else {
                        Dynamic::UNIT
                    };
                    map.insert(field.into(), value);
                }
                map.into()
            }
            _ => Dynamic::UNIT,
        };
        FilterInput {
            payload: json_to_dynamic(&payload),
            event: held.event_name.clone(),
            change,
        }
    }
}

fn payload_to_dynamic(payload: &str) -> Dynamic {
    serde_json::from_str::<serde_json::Value>(payload)
        .map_or(Dynamic::UNIT, |value| json_to_dynamic(&value))
}

/// The change that fired an event, as body scripts see it in `change`.
fn change_to_dynamic(change: &Change) -> Dynamic {
    let mut map = Map::new();
    map.insert("table".into(), change.table.clone().into());
    map.insert("row_id".into(), Dynamic::from_int(change.row_id));
    map.insert("action".into(), change.action.code().into());
    map.insert("action_key".into(), change.action.key().into());
    map.insert("row".into(), json_to_dynamic(&change.row));
    map.insert(
        "old_row".into(),
        change
            .old_row
            .as_ref()
            .map_or(Dynamic::UNIT, json_to_dynamic),
    );
    map.into()
}

fn json_to_dynamic(value: &serde_json::Value) -> Dynamic {
    rhai::serde::to_dynamic(value).unwrap_or(Dynamic::UNIT)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn cell_to_dynamic(cell: Cell) -> Dynamic {
    match cell {
        Cell::Null => Dynamic::UNIT,
        Cell::Integer(n) => Dynamic::from_int(n),
        Cell::Real(x) => Dynamic::from_float(x),
        Cell::Text(t) => t.into(),
        Cell::Blob(b) => Dynamic::from_blob(b),
        Cell::Bool(b) => Dynamic::from_bool(b),
        Cell::Json(value) => json_to_dynamic(&value),
    }
}

/// Each row as a map from column name to value. Names are short, so the map's keys are built in
/// place from the one list of names rather than copied strings.
fn rows_to_maps(rows: Rows) -> impl Iterator<Item = Dynamic> {
    let Rows { columns, values } = rows;
    values.into_iter().map(move |cells| {
        let mut map = Map::new();
        for (name, cell) in columns.iter().zip(cells) {
            map.insert(name.as_str().into(), cell_to_dynamic(cell));
        }
        Dynamic::from_map(map)
    })
}

fn dynamic_to_cell(
    function: &str,
    index: usize,
    value: &Dynamic,
) -> Result<Cell, Box<EvalAltResult>> {
    if value.is_unit() {
        Ok(Cell::Null)
    } else if let Ok(n) = value.as_int() {
        Ok(Cell::Integer(n))
    } else if let Ok(x) = value.as_float() {
        Ok(Cell::Real(x))
    } else if let Ok(b) = value.as_bool() {
        Ok(Cell::Integer(b as i64))
    } else if value.is_string() || value.is_char() {
        Ok(Cell::Text(value.to_string()))
    } else if value.is_blob() {
        Ok(Cell::Blob(value.clone().cast::<rhai::Blob>()))
    } else {
        Err(runtime_error(format!(
            "{function}: parameter {} is {}; parameters are numbers, strings, booleans or ()",
            index + 1,
            value.type_name()
        )))
    }
}

fn run_query(
    state: &RunState,
    function: &str,
    sql: &str,
    params: &Array,
    limit: RowLimit,
) -> Result<Rows, Box<EvalAltResult>> {
    let cells = params
        .iter()
        .enumerate()
        .map(|(i, p)| dynamic_to_cell(function, i, p))
        .collect::<Result<Vec<_>, _>>()?;
    let key = lock(&state.answers)
        .as_ref()
        .and_then(|_| SnapshotAnswers::key(sql, &cells, limit));
    if let Some(rows) = key
        .as_deref()
        .and_then(|key| lock(&state.answers).as_ref()?.get(key))
    {
        return Ok(rows);
    }
    if let Some(rows) = key
        .as_ref()
        .and_then(|_| ask_ahead(state, sql, &cells, limit))
    {
        return Ok(rows);
    }
    let rows = lock(&state.db).query(sql, &cells, limit).map_err(|e| {
        if matches!(e, crate::store::QueryError::Unavailable(_)) {
            state.unavailable.store(true, Ordering::SeqCst);
        }
        runtime_error(format!("{function}: {e}"))
    })?;
    if let (Some(key), Some(answers)) = (key, lock(&state.answers).as_mut()) {
        answers.remember(key, &rows);
    }
    Ok(rows)
}

/// The answer of a query asked with the current change's row id, asked together with the next
/// changes' (`SnapshotAnswers::ids_ahead`), whose answers are remembered for their scripts. `None`
/// when it cannot be asked so: then it is asked alone.
fn ask_ahead(state: &RunState, sql: &str, params: &[Cell], limit: RowLimit) -> Option<Rows> {
    let ids = lock(&state.answers)
        .as_ref()?
        .ids_ahead(sql, params, limit)?;
    let found = lock(&state.db).query_ahead(sql, &ids, limit, state.deadline.left())?;
    let mut answers = lock(&state.answers);
    let answers = answers.as_mut()?;
    for (id, rows) in ids.iter().zip(&found) {
        if let (Some(rows), Some(key)) = (
            rows,
            SnapshotAnswers::key(sql, &[Cell::Integer(*id)], limit),
        ) {
            answers.remember(key, rows);
        }
    }
    found.into_iter().next().flatten()
}

fn register_host_functions(engine: &mut Engine, state: &Arc<RunState>) {
    {
        let state = state.clone();
        engine.on_print(move |text| {
            tracing::info!(target: "herald::script", script = %lock(&state.script), "{text}")
        });
    }
    {
        let state = state.clone();
        engine.on_debug(move |text, _, position| {
            tracing::debug!(target: "herald::script", script = %lock(&state.script), %position, "{text}")
        });
    }
    {
        let state = state.clone();
        engine.on_progress(move |operations| {
            // Reading the clock every operation would cost more than the script; every 1024 is
            // well under a millisecond apart.
            if operations % 1024 == 0 && state.deadline.passed() {
                Some(Dynamic::UNIT)
            } else {
                None
            }
        });
    }
    {
        let state = state.clone();
        engine.register_fn(
            "trigger_webhook_event",
            move |name: &str, row_id: Dynamic| -> Result<(), Box<EvalAltResult>> {
                if !state.may_fire.load(Ordering::Relaxed) {
                    return Err(runtime_error(
                        "trigger_webhook_event: only notification scripts fire triggers".into(),
                    ));
                }
                if !lock(&state.known_triggers).contains(name) {
                    return Err(runtime_error(format!(
                        "trigger_webhook_event: unknown trigger '{name}' (no GetWebhookResponseBody_{name}.rhai)"
                    )));
                }
                let row_id = row_id
                    .as_int()
                    .ok()
                    .or_else(|| row_id.clone().into_string().ok().and_then(|s| s.trim().parse().ok()))
                    .ok_or_else(|| {
                        runtime_error(format!(
                            "trigger_webhook_event: row_id must be an integer, not {}",
                            row_id.type_name()
                        ))
                    })?;
                let mut fired = lock(&state.fired);
                if fired.len() >= state.max_events {
                    return Err(runtime_error(format!(
                        "trigger_webhook_event: this run already fired {} events, the most one change may fire (sandbox.max_events_per_change)",
                        state.max_events
                    )));
                }
                fired.push(Fired {
                    trigger: name.to_owned(),
                    row_id,
                });
                Ok(())
            },
        );
    }
    {
        let state = state.clone();
        engine.register_fn(
            "db_query",
            move |sql: &str, params: Array| -> Result<Array, Box<EvalAltResult>> {
                let limit = RowLimit::AtMost(state.max_rows);
                Ok(rows_to_maps(run_query(&state, "db_query", sql, &params, limit)?).collect())
            },
        );
    }
    {
        let state = state.clone();
        engine.register_fn(
            "db_query",
            move |sql: &str| -> Result<Array, Box<EvalAltResult>> {
                let limit = RowLimit::AtMost(state.max_rows);
                Ok(
                    rows_to_maps(run_query(&state, "db_query", sql, &Array::new(), limit)?)
                        .collect(),
                )
            },
        );
    }
    {
        let state = state.clone();
        engine.register_fn(
            "db_query_one",
            move |sql: &str, params: Array| -> Result<Dynamic, Box<EvalAltResult>> {
                let rows = run_query(&state, "db_query_one", sql, &params, RowLimit::First)?;
                Ok(rows_to_maps(rows).next().unwrap_or(Dynamic::UNIT))
            },
        );
    }
    {
        let state = state.clone();
        engine.register_fn(
            "db_query_one",
            move |sql: &str| -> Result<Dynamic, Box<EvalAltResult>> {
                let rows = run_query(&state, "db_query_one", sql, &Array::new(), RowLimit::First)?;
                Ok(rows_to_maps(rows).next().unwrap_or(Dynamic::UNIT))
            },
        );
    }
    engine.register_fn("now", crate::clock::now_rfc3339);
}

/// Sandboxes for request handlers: building one costs an engine and a connection, so they are kept.
pub struct SandboxPool {
    store: Store,
    limits: SandboxLimits,
    idle: Mutex<Vec<Sandbox>>,
}

impl SandboxPool {
    pub fn new(store: Store, limits: SandboxLimits) -> SandboxPool {
        SandboxPool {
            store,
            limits,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `f` with a sandbox (blocking: call from a blocking thread).
    pub fn with<T>(&self, f: impl FnOnce(&Sandbox) -> T) -> Result<T, StoreError> {
        let sandbox = match lock(&self.idle).pop() {
            Some(sandbox) => sandbox,
            None => Sandbox::new(&self.limits, self.store.script_db()?),
        };
        let result = f(&sandbox);
        let mut idle = lock(&self.idle);
        if idle.len() < 8 {
            idle.push(sandbox);
        }
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The names of every function a script can call: the engine's packages and herald's own.
    fn callable_names() -> BTreeSet<String> {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        let sandbox = Sandbox::new(&SandboxLimits::default(), store.script_db().unwrap());
        sandbox
            .engine
            .gen_fn_signatures(true)
            .iter()
            .map(|signature| signature.split('(').next().unwrap().to_owned())
            .collect()
    }

    /// SQLite cannot share a snapshot between connections: the batch goes to one sandbox, and
    /// asking must not leave the leader's connection locked (it did: a guard kept alive by the
    /// `match` deadlocked the tracker, on SQLite with `render_threads` > 1 and on PostgreSQL when
    /// sharing failed).
    #[test]
    fn a_database_that_cannot_share_a_snapshot_leaves_the_batch_to_one_sandbox() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        let limits = SandboxLimits::default();
        let leader = Sandbox::new(&limits, store.script_db().unwrap());
        let other = Sandbox::new(&limits, store.script_db().unwrap());
        let (answer, answered) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let shared = Sandbox::in_a_shared_snapshot(&[&leader, &other], || "rendered");
            // The leader's connection is free again.
            leader.in_one_snapshot(|| ());
            let _ = answer.send(shared);
        });
        let shared = answered
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("in_a_shared_snapshot returns");
        assert_eq!(shared, None);
    }

    /// Functions that block or wait hold the tracker past its time budget (no operation is counted
    /// while they wait), so every function is checked against a reviewed list: a rhai upgrade
    /// that adds one fails here until someone has read what it does. Run with
    /// `HERALD_WRITE_ALLOWED_FUNCTIONS=1` to rewrite the list, then review its diff.
    #[test]
    fn scripts_can_call_only_the_reviewed_functions() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/scripts/allowed_functions.txt"
        );
        let names = callable_names();
        if std::env::var_os("HERALD_WRITE_ALLOWED_FUNCTIONS").is_some() {
            let text: String = names.iter().map(|name| format!("{name}\n")).collect();
            std::fs::write(path, text).unwrap();
        }
        let allowed: BTreeSet<String> = std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        let new: Vec<_> = names.difference(&allowed).collect();
        let gone: Vec<_> = allowed.difference(&names).collect();
        assert!(
            new.is_empty() && gone.is_empty(),
            "functions not reviewed: {new:?}; listed but gone: {gone:?}"
        );
        // rhai's standard library had these; the sandbox must not.
        for waits in ["sleep", "exit"] {
            assert!(!names.contains(waits), "{waits} is callable");
        }
        for needed in [
            "db_query",
            "db_query_one",
            "trigger_webhook_event",
            "now",
            "parse_json",
        ] {
            assert!(names.contains(needed), "{needed} is missing");
        }
    }
}
