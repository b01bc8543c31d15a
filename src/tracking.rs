//! The change-log consumer: reads tracked changes in commit order, runs each table's notification
//! script once per changed row, renders the events it fires, adds the resource events hooks select,
//! judges them by the filters of the hooks that select them, and stores them.
//!
//! It runs on a thread of its own (the database clients and rhai block). Its `ChangeFeed` says when
//! the log may hold something new: on SQLite a look at `PRAGMA data_version` every millisecond,
//! which costs microseconds; on PostgreSQL the triggers' `NOTIFY`.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::Notify;

use crate::backoff::Backoff;
use crate::config::TrackingSettings;
use crate::delivery::Handoff;
use crate::events::{
    event_type, render_event, resource_event, resource_event_name, row_scope, RenderError,
};
use crate::filters::Filters;
use crate::metrics::Metrics;
use crate::scripts::{Sandbox, ScriptRegistry, ScriptSet};
use crate::store::{
    Change, ChangeFeed, ConsumerRole, NewEvent, ScriptDb, ScriptFailure, Store, StoreError, Stored,
    UnreadableChange,
};

/// What one change produced.
#[derive(Debug, Default)]
pub struct ChangeOutcome {
    pub events: Vec<NewEvent>,
    pub failures: Vec<ScriptFailure>,
}

/// What handling a change needs besides the scripts.
pub struct ChangeContext<'a> {
    pub sandbox: &'a Sandbox,
    pub scripts: &'a ScriptSet,
    /// The resource events (`Deal.update`) some enabled hook selects, read once per batch.
    pub resource_events: &'a BTreeSet<String>,
    /// Finds a row's company through its project.
    pub scope_db: &'a dyn ScriptDb,
}

/// Runs the notification script of the change's table, renders every trigger it fires, and adds the
/// change's resource event when a hook selects it. A failing script or body script costs that change
/// (or that event) only, recorded as a failure.
pub fn process_change(context: &ChangeContext<'_>, change: &Change, out: &mut ChangeOutcome) {
    let resource_event_name = resource_event_name(&change.table, event_type(change.action));
    let wants_resource_event = context.resource_events.contains(&resource_event_name);
    let script = context.scripts.notification(&change.table);
    if script.is_none() && !wants_resource_event {
        // The table stopped being tracked between the change and now.
        return;
    }
    let scope = row_scope(change, context.scope_db);
    if wants_resource_event {
        out.events.push(resource_event(change, scope));
    }
    let Some(script) = script else {
        return;
    };
    let fired = match context.sandbox.run_notification(
        script,
        change,
        context.scripts.trigger_names(),
    ) {
        Ok(fired) => fired,
        Err(diagnostic) => {
            tracing::warn!(change_id = change.id, table = %change.table, row_id = change.row_id, "{}", diagnostic.render());
            out.failures.push(ScriptFailure {
                script: diagnostic.file,
                line: diagnostic.position.map(|p| p.0),
                col: diagnostic.position.map(|p| p.1),
                message: diagnostic.message,
                trigger: None,
                table: Some(change.table.clone()),
                row_id: Some(change.row_id),
                change_id: Some(change.id),
            });
            return;
        }
    };
    for fired in fired {
        match render_event(
            context.sandbox,
            context.scripts,
            &fired.trigger,
            fired.row_id,
            Some((change, scope)),
        ) {
            Ok(event) => out.events.push(event),
            Err(error) => {
                tracing::warn!(change_id = change.id, trigger = %fired.trigger, row_id = fired.row_id, "{error}");
                let (script, position, message) = match error {
                    RenderError::Script(d) => (d.file, d.position, d.message),
                    RenderError::UnknownTrigger(_) => {
                        (script.file_name.clone(), None, error.to_string())
                    }
                };
                out.failures.push(ScriptFailure {
                    script,
                    line: position.map(|p| p.0),
                    col: position.map(|p| p.1),
                    message,
                    trigger: Some(fired.trigger),
                    table: Some(change.table.clone()),
                    row_id: Some(fired.row_id),
                    change_id: Some(change.id),
                });
            }
        }
    }
}

/// A logged row that cannot be read, recorded against the table's notification script (the script
/// that could not run for it) or, for a table tracked for resource events alone, against the change
/// log itself; and logged. The changes behind it go on.
fn unreadable_change_failure(scripts: &ScriptSet, change: &UnreadableChange) -> ScriptFailure {
    let script = scripts
        .notification(&change.table)
        .map_or_else(|| "herald_changes".to_owned(), |s| s.file_name.clone());
    let message = format!(
        "change {} ({} row {}) in the change log cannot be read and was skipped: {}",
        change.id, change.table, change.row_id, change.reason
    );
    tracing::warn!(change_id = change.id, table = %change.table, row_id = change.row_id, "{message}");
    ScriptFailure {
        script,
        line: None,
        col: None,
        message,
        trigger: None,
        table: Some(change.table.clone()),
        row_id: Some(change.row_id),
        change_id: Some(change.id),
    }
}

/// A batch at least this long is rendered by every sandbox at once, when there are several.
const SHARED_FROM: usize = 16;

/// How long a node that does not consume waits before it asks for the role again (the role
/// itself says how often it really tries: see `ConsumerRole`).
const NOT_THE_CONSUMER_NAP: Duration = Duration::from_millis(100);

/// How much longer than a script may run the tracker may stand still in one step (a commit, a
/// read of the log) before `/readyz` calls it stalled.
const STALL_MARGIN: Duration = Duration::from_secs(5);

/// Whether the tracker runs, and when it last moved: it beats at every turn of its loop, after
/// every change it renders and while it waits out a failure, so a beat older than the scripts'
/// time budget and `STALL_MARGIN` means it is stuck (a database call that does not come back).
pub struct TrackerPulse {
    alive: AtomicBool,
    last_beat_ms: AtomicI64,
    stalled_after: Duration,
}

impl TrackerPulse {
    pub fn new(script_time_budget: Duration) -> Arc<TrackerPulse> {
        Arc::new(TrackerPulse {
            alive: AtomicBool::new(false),
            last_beat_ms: AtomicI64::new(crate::clock::now_ms()),
            stalled_after: script_time_budget + STALL_MARGIN,
        })
    }

    fn beat(&self) {
        self.last_beat_ms
            .store(crate::clock::now_ms(), Ordering::Relaxed);
    }

    /// Whether the tracker's thread runs.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    /// How long it has stood still, when that is longer than anything it does should take.
    pub fn stalled_for(&self, now_ms: i64) -> Option<Duration> {
        let still = Duration::from_millis(
            (now_ms - self.last_beat_ms.load(Ordering::Relaxed)).max(0) as u64,
        );
        (self.is_alive() && still > self.stalled_after).then_some(still)
    }
}

/// A sandbox and the handle that places rows in their scope: what renders one share of a batch.
pub struct Renderer {
    pub sandbox: Sandbox,
    /// Used by one thread at a time (a handle is not shared); the lock lets a renderer be lent to
    /// a thread of its own.
    pub scope_db: std::sync::Mutex<Box<dyn ScriptDb>>,
    pulse: Arc<TrackerPulse>,
}

impl Renderer {
    pub fn new(
        sandbox: Sandbox,
        scope_db: Box<dyn ScriptDb>,
        pulse: Arc<TrackerPulse>,
    ) -> Renderer {
        Renderer {
            sandbox,
            scope_db: std::sync::Mutex::new(scope_db),
            pulse,
        }
    }

    /// Processes `changes` in order, on this thread.
    fn process(
        &self,
        scripts: &ScriptSet,
        resource_events: &BTreeSet<String>,
        changes: &[Change],
    ) -> ChangeOutcome {
        let scope_db = self
            .scope_db
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let context = ChangeContext {
            sandbox: &self.sandbox,
            scripts,
            resource_events,
            scope_db: &**scope_db,
        };
        let mut outcome = ChangeOutcome::default();
        self.sandbox.expect_rows(
            changes
                .iter()
                .map(|change| (change.table.as_str(), change.row_id)),
        );
        for change in changes {
            process_change(&context, change, &mut outcome);
            self.sandbox.next_row();
            self.pulse.beat();
        }
        outcome
    }
}

pub struct Tracker {
    store: Store,
    registry: Arc<ScriptRegistry>,
    /// This process's claim to consume the change log; it consumes only while it holds it.
    role: Box<dyn ConsumerRole>,
    /// Whether it holds it now, for the rest of the process (the chores only the consumer does).
    consumer: Arc<AtomicBool>,
    /// The first renders every batch; the others (`tracking.render_threads`) share long batches
    /// with it, each its own part, all in one snapshot: on PostgreSQL a script's query is a round
    /// trip to the server, and a batch rendered by one thread waits out each in turn.
    renderers: Vec<Renderer>,
    reader: Box<dyn ChangeFeed>,
    settings: TrackingSettings,
    /// Where fresh deliveries go straight to the worker while it has room for them.
    handoff: Handoff,
    /// Told whenever deliveries were stored that the worker has to claim.
    deliveries_waiting: Arc<Notify>,
    metrics: Arc<Metrics>,
    /// Hooks' filters, compiled once.
    filters: Filters,
}

impl Tracker {
    /// `renderers`: at least one. `consumer` is set while this process holds the consumer's role.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        registry: Arc<ScriptRegistry>,
        consumer: Arc<AtomicBool>,
        renderers: Vec<Renderer>,
        settings: TrackingSettings,
        handoff: Handoff,
        deliveries_waiting: Arc<Notify>,
        metrics: Arc<Metrics>,
    ) -> Result<Tracker, StoreError> {
        assert!(!renderers.is_empty(), "a tracker needs a renderer");
        let reader = store.change_feed()?;
        let role = store.consumer_role()?;
        Ok(Tracker {
            store,
            registry,
            role,
            consumer,
            renderers,
            reader,
            settings,
            handoff,
            deliveries_waiting,
            metrics,
            filters: Filters::default(),
        })
    }

    /// Takes or keeps the consumer's role; whether this process may consume now. A node that
    /// becomes the consumer brings the capture in line with its own scripts first.
    fn holds_the_role(&mut self) -> Result<bool, StoreError> {
        let holds = match self.role.holds() {
            Ok(holds) => holds,
            Err(e) => {
                self.consumer.store(false, Ordering::SeqCst);
                return Err(e);
            }
        };
        let was = self.consumer.swap(holds, Ordering::SeqCst);
        if holds && !was {
            let tables = self.registry.current().tracked_tables();
            for problem in self.store.sync_tracking(&tables)? {
                tracing::error!(table = %problem.table, "cannot track: {}", problem.message);
            }
        }
        if was && !holds {
            tracing::warn!("this node no longer consumes the change log");
        }
        Ok(holds)
    }

    /// Runs on a thread of its own until `stop` is set; `pulse` says whether it still runs and
    /// moves.
    pub fn spawn(
        self,
        stop: Arc<AtomicBool>,
        pulse: Arc<TrackerPulse>,
    ) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("herald-tracking".into())
            .spawn(move || {
                pulse.beat();
                pulse.alive.store(true, Ordering::SeqCst);
                self.run(&stop, &pulse);
                pulse.alive.store(false, Ordering::SeqCst);
            })
    }

    /// After a failure, whether the role is still held is asked at once rather than after the
    /// back-off: a node cut off from its database stops saying it consumes as soon as the lock's
    /// connection is found dead.
    fn ask_after_failure(&mut self) {
        if self.consumer.load(Ordering::SeqCst) {
            let _ = self.holds_the_role();
        }
    }

    fn run(mut self, stop: &AtomicBool, pulse: &TrackerPulse) {
        let mut seen_schema_version = self.reader.schema_version().ok();
        let mut backoff = Backoff::default();
        let mut more_waiting = true;
        while !stop.load(Ordering::Relaxed) {
            pulse.beat();
            match self.holds_the_role() {
                Ok(true) => {}
                Ok(false) => {
                    // Another node consumes; this one delivers and serves, and asks again.
                    std::thread::sleep(NOT_THE_CONSUMER_NAP);
                    more_waiting = true;
                    continue;
                }
                Err(e) => {
                    tracing::warn!("cannot tell whether this node consumes the change log: {e}");
                    sleep_after_failure(&mut backoff, stop);
                    more_waiting = true;
                    continue;
                }
            }
            if !more_waiting {
                match self.reader.wait_for_changes(self.settings.poll_interval) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        tracing::warn!("cannot read the change log: {e}");
                        self.ask_after_failure();
                        sleep_after_failure(&mut backoff, stop);
                        continue;
                    }
                }
            }
            let schema_version = self.reader.schema_version().ok();
            if schema_version != seen_schema_version {
                // An application migration may have added a column: refresh the triggers so `row`
                // carries it.
                seen_schema_version = schema_version;
                let tables = self.registry.current().tracked_tables();
                match self.store.sync_tracking(&tables) {
                    Ok(problems) => {
                        for problem in problems {
                            tracing::error!(table = %problem.table, "cannot track: {}", problem.message);
                        }
                    }
                    Err(e) => tracing::warn!("cannot refresh the tracking triggers: {e}"),
                }
            }
            match self.consume_batch(stop, pulse) {
                Ok(consumed) => {
                    more_waiting = consumed == self.settings.batch_size;
                    backoff.reset();
                }
                Err(e) => {
                    tracing::warn!("change log consumer: {e}; retrying");
                    more_waiting = true;
                    self.ask_after_failure();
                    sleep_after_failure(&mut backoff, stop);
                }
            }
        }
    }

    /// Consumes at most one batch; returns how many rows of the log it consumed, readable or not.
    fn consume_batch(
        &mut self,
        stop: &AtomicBool,
        pulse: &TrackerPulse,
    ) -> Result<usize, StoreError> {
        let batch = self.reader.read_next(self.settings.batch_size)?;
        if batch.is_empty() {
            return Ok(0);
        }
        let scripts = self.registry.current();
        let hooks = self.store.hooks_for_batch()?;
        for renderer in &self.renderers {
            renderer.sandbox.take_database_unavailable();
        }
        let mut outcome = render(
            &self.renderers,
            &scripts,
            &hooks.resource_events,
            &batch.changes,
        );
        self.filters.judge_batch(
            &self.renderers[0].sandbox,
            &hooks.filter_rules,
            &mut outcome.events,
            &batch.changes,
        );
        let unavailable = self
            .renderers
            .iter()
            .filter(|renderer| renderer.sandbox.take_database_unavailable())
            .count();
        if unavailable > 0 {
            // Its scripts failed for the database, not for what they do: the batch stays in the
            // log and is read again once the database answers, rather than consumed with failures.
            return Err(StoreError::Connect(
                "the scripts' queries could not reach the database; the batch is read again".into(),
            ));
        }
        for unreadable in &batch.unreadable {
            outcome
                .failures
                .push(unreadable_change_failure(&scripts, unreadable));
        }
        // The scripts ran once; only the commit is retried, so a busy database never runs a script
        // twice for the same change.
        let mut backoff = Backoff::default();
        loop {
            match self.store.commit_consumed_changes(
                &batch.consumed,
                &outcome.events,
                &outcome.failures,
                Some(&self.handoff.lease()),
            ) {
                Ok(Stored { deliveries, leased }) => {
                    if deliveries > leased.len() {
                        self.deliveries_waiting.notify_one();
                    }
                    self.handoff.hand_over(leased);
                    self.metrics.changes_consumed(batch.len());
                    for event in &outcome.events {
                        self.metrics.event_fired(&event.trigger);
                        tracing::debug!(
                            event_id = %event.id,
                            event = %event.trigger,
                            row_id = event.row_id,
                            "event fired"
                        );
                    }
                    for failure in &outcome.failures {
                        self.metrics.script_failed(&failure.script);
                    }
                    tracing::debug!(
                        changes = batch.len(),
                        events = outcome.events.len(),
                        deliveries,
                        "changes consumed"
                    );
                    return Ok(batch.len());
                }
                Err(StoreError::ConcurrentConsumer) => {
                    tracing::warn!(
                        "another herald process consumed these changes; skipping them here"
                    );
                    return Ok(0);
                }
                Err(e) if e.is_busy() && !stop.load(Ordering::Relaxed) => {
                    tracing::warn!("database busy while storing events; retrying");
                    sleep_after_failure(&mut backoff, stop);
                    // Waiting its turn is not standing still.
                    pulse.beat();
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Runs `process_change` for every change, in order, in one snapshot of the database: on one
/// renderer, or, for a long batch and where the database can share a snapshot, on all of them at
/// once, each a contiguous part, their outcomes put back in the batch's order.
fn render(
    renderers: &[Renderer],
    scripts: &ScriptSet,
    resource_events: &BTreeSet<String>,
    changes: &[Change],
) -> ChangeOutcome {
    let alone = |renderer: &Renderer| {
        renderer
            .sandbox
            .in_one_snapshot(|| renderer.process(scripts, resource_events, changes))
    };
    if renderers.len() < 2 || changes.len() < SHARED_FROM {
        return alone(&renderers[0]);
    }
    let sandboxes: Vec<&Sandbox> = renderers.iter().map(|r| &r.sandbox).collect();
    let part = changes.len().div_ceil(renderers.len());
    let shared = Sandbox::in_a_shared_snapshot(&sandboxes, || {
        std::thread::scope(|scope| {
            let handles: Vec<_> = renderers
                .iter()
                .zip(changes.chunks(part))
                .map(|(renderer, part)| {
                    scope.spawn(move || renderer.process(scripts, resource_events, part))
                })
                .collect();
            let mut all = ChangeOutcome::default();
            for handle in handles {
                let part = handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                all.events.extend(part.events);
                all.failures.extend(part.failures);
            }
            all
        })
    });
    match shared {
        Some(outcome) => outcome,
        None => alone(&renderers[0]),
    }
}

/// Sleeps out the backoff of one more failure, waking early when asked to stop.
fn sleep_after_failure(backoff: &mut Backoff, stop: &AtomicBool) {
    let delay = backoff.failed();
    let step = Duration::from_millis(20);
    let mut slept = Duration::ZERO;
    while slept < delay && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(step);
        slept += step;
    }
}
