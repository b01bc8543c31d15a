//! The seam between herald and its database: what each part of herald needs of storage, as traits
//! a backend implements. SQLite (`Sqlite`) implements them today; a PostgreSQL backend implements
//! the same traits and nothing above `store` changes.
//!
//! The traits are synchronous on purpose: every caller already runs on a blocking thread (the
//! tracker's thread, the worker's trips through `spawn_blocking`, the HTTP handlers' `blocking`
//! helper), rusqlite is blocking, and a blocking PostgreSQL client fits the same places. An async
//! seam would force SQLite through a thread hop per call for nothing.
//!
//! Each trait is what one consumer needs: the admin API and the pages read and write hooks
//! (`Hooks`) and history (`History`); the delivery worker and the API's fan-out use the outbox
//! (`Outbox`); the tracker reads a feed of changes and commits what it consumed (`ChangeLog`,
//! `ChangeFeed`); scripts get a read-only query handle (`ScriptDb`); the server runs the backend's
//! own upkeep and readiness checks (`Operations`); the nodes beat and elect the change log's
//! consumer (`Nodes`); the admin pages keep their sessions and count failed sign-ins (`SignIns`).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use super::{
    AttemptDetail, AttemptEntry, AttemptRecord, Backfill, BackfillStep, Cell, ChangeBatch, Claim,
    ClaimOutcome, ClaimedDelivery, Consumed, DeliveryStatus, EventAction, EventFilter,
    FailurePolicy, FilterRule, HeldEvent, Hook, HookEvent, HookFilter, HookHealthChange, HookPatch,
    HooksForBatch, Judgement, NewEvent, NewHook, NodeBeat, NodeStatus, OutboxSnapshot, Page,
    QueryError, Result, RowLimit, Rows, ScopeName, ScriptFailure, SignInAllowance, Stored,
    StoredAttempt, StoredSession, TrackingProblem, TrackingSql,
};
use crate::delivery::DirectLease;

/// Everything herald needs of a database.
pub trait Backend:
    Hooks + History + Outbox + ChangeLog + Operations + Nodes + SignIns + Backfills + Send + Sync
{
}

impl<
        T: Hooks
            + History
            + Outbox
            + ChangeLog
            + Operations
            + Nodes
            + SignIns
            + Backfills
            + Send
            + Sync,
    > Backend for T
{
}

/// Backfills: existing rows queued as events for one hook, step by step (see `backfills.rs`).
pub trait Backfills {
    /// A new backfill of `total` rows, `preparing` until `start_backfill`.
    fn create_backfill(&self, hook_id: &str, event_name: &str, total: u64) -> Result<Backfill>;
    /// Stores rows of a preparing backfill, in order, from position `first_position`.
    fn add_backfill_rows(&self, id: &str, first_position: u64, row_ids: &[i64]) -> Result<()>;
    /// Every row is stored: the backfill runs.
    fn start_backfill(&self, id: &str) -> Result<()>;
    fn get_backfill(&self, hook_id: &str, id: &str) -> Result<Option<Backfill>>;
    /// A hook's backfills, newest first.
    fn hook_backfills(&self, hook_id: &str, limit: usize) -> Result<Vec<Backfill>>;
    /// The backfills that run, oldest first.
    fn running_backfills(&self) -> Result<Vec<Backfill>>;
    /// At most `limit` row ids of a backfill, from position `from`, in order.
    fn backfill_rows(&self, id: &str, from: u64, limit: usize) -> Result<Vec<i64>>;
    /// Stores a step's events (each with one delivery for the backfill's hook, due now) and
    /// failures, and moves the position, in one transaction; `false` (nothing stored) when the
    /// backfill is not at `step.from` any more or no longer runs.
    fn record_backfill_step(&self, step: &BackfillStep<'_>) -> Result<bool>;
    /// Stops a running (or preparing) backfill of hook `hook_id` by hand; whether it was one.
    /// What it queued stays queued.
    fn cancel_backfill(&self, hook_id: &str, id: &str) -> Result<bool>;
    /// Stops a backfill for good, saying why.
    fn fail_backfill(&self, id: &str, error: &str) -> Result<()>;
    /// How many deliveries wait for a hook (first attempts and retries).
    fn hook_waiting(&self, hook_id: &str) -> Result<u64>;
}

/// The herald processes of the database: who runs, what each runs, and who consumes the change
/// log (one at a time, chosen by the database).
pub trait Nodes {
    /// Records this node's heartbeat, making its row at the first.
    fn heartbeat(&self, beat: &NodeBeat) -> Result<()>;
    /// Every node that ever beat (the newest heartbeat first); a node gone for good stays listed
    /// until `forget_nodes_older_than`.
    fn nodes(&self) -> Result<Vec<NodeStatus>>;
    /// Forgets the nodes whose last heartbeat is older than `cutoff` (Unix ms).
    fn forget_nodes_older_than(&self, cutoff: i64) -> Result<usize>;
    /// Takes this process's presence in the database, or takes it again if its connection was
    /// lost: while it is held, the deliveries this process leased are its own (see
    /// `release_leases_of_departed`). Taken before the worker claims anything.
    fn hold_presence(&self) -> Result<()>;
    /// Hands the deliveries leased by processes that are gone back to the outbox at once, instead
    /// of when their leases run out; how many. Nothing to do with one process (SQLite).
    fn release_leases_of_departed(&self) -> Result<usize>;
    /// This process's claim to the consumer's role.
    fn consumer_role(&self) -> Result<Box<dyn ConsumerRole>>;
}

/// The admin pages' sessions and the failed sign-ins of each address, in the database so that
/// every node knows them (see `sign_ins.rs`). Times are Unix ms; the policy is the caller's.
pub trait SignIns {
    /// Stores a new session by its cookie's hash, first forgetting the sessions last used before
    /// `idle_cutoff` and, to keep at most `max`, the least recently used.
    fn create_session(
        &self,
        id_hash: &str,
        csrf: &str,
        now: i64,
        idle_cutoff: i64,
        max: usize,
    ) -> Result<()>;
    /// The session, unless it was last used before `idle_cutoff` (then it is ended); marked used
    /// at `now` when its mark is older than `touch_before`, so that a busy page writes seldom.
    fn session(
        &self,
        id_hash: &str,
        now: i64,
        idle_cutoff: i64,
        touch_before: i64,
    ) -> Result<Option<StoredSession>>;
    /// Ends the session, on every node.
    fn end_session(&self, id_hash: &str) -> Result<()>;
    /// Leaves a banner for the session's next page (sealed: it may carry a secret shown once).
    fn set_flash(&self, id_hash: &str, flash: &str) -> Result<()>;
    /// The session's banner, taken: it shows once.
    fn take_flash(&self, id_hash: &str) -> Result<Option<String>>;
    /// Until when `address` may not sign in, if it may not at `now`.
    fn sign_in_blocked_until(&self, address: &str, now: i64) -> Result<Option<i64>>;
    /// Counts a failed sign-in of `address` against `allowance`; past it, blocks the address and
    /// says until when.
    fn failed_sign_in(
        &self,
        address: &str,
        now: i64,
        allowance: &SignInAllowance,
    ) -> Result<Option<i64>>;
}

/// The role of the change log's one consumer (and of the chores that go with it: retention, the
/// tracking triggers).
pub trait ConsumerRole: Send {
    /// Whether this process holds the role now, taking it when it is free. Cheap when nothing
    /// changed; a process that lost its hold on the database has lost the role.
    fn holds(&mut self) -> Result<bool>;
}

/// Hooks as administrators and integrations configure them. Secrets come back opened.
pub trait Hooks {
    fn create_hook(&self, new: NewHook) -> Result<Hook>;
    fn get_hook(&self, id: &str) -> Result<Option<Hook>>;
    /// Whether a hook exists, without opening its secrets.
    fn hook_exists(&self, id: &str) -> Result<bool>;
    /// Newest first, at most `limit`, after the hook `after` (the last id of the previous page).
    fn list_hooks(
        &self,
        filter: &HookFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<Hook, String>>;
    /// How many hooks `filter` keeps, whatever the page.
    fn count_hooks(&self, filter: &HookFilter) -> Result<u64>;
    /// `None` when there is no such hook. Disabling a hook discards what waits for it.
    fn update_hook(&self, id: &str, patch: &HookPatch) -> Result<Option<Hook>>;
    /// The old secret keeps signing beside the new one until `grace_until` (Unix ms).
    fn rotate_secret(&self, id: &str, new_secret: &str, grace_until: i64) -> Result<Option<Hook>>;
    /// Ticks or clears one event (a trigger or a grid cell); `None` when there is no such hook,
    /// else whether anything changed.
    fn set_hook_event(&self, id: &str, event: &str, selected: bool) -> Result<Option<bool>>;
    /// Seals secrets still stored in plain text; checks that the key opens the sealed ones.
    fn seal_plain_secrets(&self) -> Result<usize>;
    /// Every selected event name with how many hooks select it, by name.
    fn hooks_per_event(&self) -> Result<Vec<(String, usize)>>;
    /// The rate limits of enabled hooks (deliveries per second), for the worker's `Capacity`.
    fn rate_limits(&self) -> Result<Vec<(String, f64)>>;
    /// The filters of enabled hooks, with the events each selects: what the tracker judges a
    /// batch's events by before it stores them.
    fn filter_rules(&self) -> Result<Vec<FilterRule>>;
    /// The resource events (`Deal.update`) some enabled hook receives: tables to track.
    fn subscribed_resource_events(&self) -> Result<BTreeSet<String>>;
    /// Both of the above, as the tracker reads them before each batch: in one round trip where
    /// the database is another process.
    fn hooks_for_batch(&self) -> Result<HooksForBatch> {
        Ok(HooksForBatch {
            resource_events: self.subscribed_resource_events()?,
            filter_rules: self.filter_rules()?,
        })
    }
    /// Which of `ids` exist and are enabled.
    fn enabled_hooks_among(&self, ids: &[String]) -> Result<BTreeSet<String>>;
    /// Deletes a hook, discarding what waits for it; whether it existed.
    fn delete_hook(&self, id: &str) -> Result<bool>;
    /// Deletes a REST-hooks subscription only if the token named `made_by` made it.
    fn delete_subscription_made_by(&self, id: &str, made_by: &str) -> Result<bool>;
    /// Acknowledges the unsubscribe of a subscription herald removed itself (its target answered
    /// 410): whether there was one, made by the token named `made_by` (`None`: by any). Once.
    fn acknowledge_gone_subscription(&self, id: &str, made_by: Option<&str>) -> Result<bool>;
}

/// What happened: the deliveries log, the event history and their actions, script failures,
/// retention.
pub trait History {
    /// A hook's attempts, newest first, before cursor `before`.
    fn hook_attempts(
        &self,
        hook_id: &str,
        only_failures: bool,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Page<AttemptEntry>>;
    fn hook_attempt(&self, hook_id: &str, seq: i64) -> Result<Option<AttemptDetail>>;
    fn hook_delivery_counts(&self, hook_id: &str) -> Result<Vec<(DeliveryStatus, u64)>>;
    /// When the oldest delivery of the hook still waiting (for a first attempt or a retry) was
    /// made, Unix ms.
    fn hook_oldest_waiting(&self, hook_id: &str) -> Result<Option<i64>>;
    /// A hook's events, newest first, before cursor `before`.
    fn hook_events(
        &self,
        hook_id: &str,
        filter: &EventFilter,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Page<HookEvent>>;
    fn retry_hook_event(&self, hook_id: &str, event_id: &str) -> Result<EventAction>;
    fn discard_hook_event(&self, hook_id: &str, event_id: &str) -> Result<EventAction>;
    /// Makes due what failed (and, with `include_discarded`, was discarded) since `since`.
    fn retry_failed_since(
        &self,
        hook_id: &str,
        since: i64,
        include_discarded: bool,
    ) -> Result<usize>;
    /// Deletes at most `batch` final events created before `cutoff`; how many went.
    fn purge_before(&self, cutoff: i64, batch: usize) -> Result<usize>;
    fn recent_script_failures(&self, limit: usize) -> Result<Vec<ScriptFailure>>;
    /// The events held for a hook because its filter failed on them (only `event_id`, when
    /// given), oldest first, after the delivery `after` (a `HeldEvent::seq`), at most `limit`.
    fn filter_held_events(
        &self,
        hook_id: &str,
        event_id: Option<&str>,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Vec<HeldEvent>>;
    /// Settles held events the filter judged again: passed ones are due now, rejected ones are
    /// discarded (and counted in the hook's `filtered_out`), failed ones keep waiting with the new
    /// error. Only events still held are touched; how many were made due.
    fn settle_held_events(&self, hook_id: &str, judged: &[(String, Judgement)]) -> Result<usize>;
}

/// The outbox: events fanned out to hooks, claimed by the worker, recorded.
pub trait Outbox {
    /// Stores events fired outside the change log (by hand, by the API) and fans them out;
    /// how many deliveries that made.
    fn insert_events(&self, events: &[NewEvent]) -> Result<usize>;
    /// `record_and_claim` without records, for a worker holding `in_flight`: tests and tools.
    fn claim_due(
        &self,
        now: i64,
        lease_ms: i64,
        limit: usize,
        in_flight: &HashMap<String, usize>,
        per_hook_limit: usize,
    ) -> Result<ClaimOutcome>;
    /// The worker's trip: records finished attempts, hands back `handed_back`, and claims what
    /// `claim` asks for, in one transaction.
    fn record_and_claim(
        &self,
        records: &[AttemptRecord],
        handed_back: &[ClaimedDelivery],
        policy: &FailurePolicy,
        claim: &Claim<'_>,
    ) -> Result<(ClaimOutcome, Vec<HookHealthChange>)>;
    /// Stores `event`, marked as a test, with one delivery due now for hook `hook_id` alone
    /// (whatever it selects, whatever its filter): the delivery's `webhook-id`, or `None` when
    /// there is no such hook.
    fn insert_test_event(&self, hook_id: &str, event: &NewEvent) -> Result<Option<String>>;
    /// Claimed deliveries never sent go back to the outbox, due at `now`, as if never claimed.
    fn hand_back(&self, claims: &[&ClaimedDelivery], now: i64) -> Result<()>;
    fn record_attempts(
        &self,
        records: &[AttemptRecord],
        policy: &FailurePolicy,
    ) -> Result<Vec<HookHealthChange>>;
    /// What `/metrics` reports of the outbox and the hooks.
    fn outbox_snapshot(&self) -> Result<OutboxSnapshot>;
    fn delivery_status(&self, message_id: &str) -> Result<Option<DeliveryStatus>>;
    fn attempts_of(&self, message_id: &str) -> Result<Vec<StoredAttempt>>;
}

/// The change log: capture on the application's tables, and its consumption.
pub trait ChangeLog {
    /// Brings the capture in line with the tables to track; the tables that cannot be tracked.
    fn sync_tracking(&self, script_tables: &[String]) -> Result<Vec<TrackingProblem>>;
    /// Runs the application's migration `sql` and makes the tracking triggers for the tables as it
    /// leaves them, in one transaction: herald's triggers never block it, no change written by
    /// others can slip between the migration and the new triggers, and the migration's own writes
    /// are not changes.
    fn migrate_application(
        &self,
        sql: &str,
        script_tables: &[String],
    ) -> Result<Vec<TrackingProblem>>;
    /// What a migration tool running `sql` itself must run before and after it, in its
    /// transaction, to the same effect (`sql` is tried in a transaction that is rolled back).
    fn tracking_sql_around(&self, sql: &str, script_tables: &[String]) -> Result<TrackingSql>;
    /// The application's tables that can be tracked: the resources of the grid.
    fn application_tables(&self) -> Result<Vec<String>>;
    /// The newest row of an application table with its id: a resource event's sample.
    fn newest_row(&self, table: &str) -> Result<Option<(i64, serde_json::Value)>>;
    /// The rows of an application table with these ids (in no particular order), each as
    /// `newest_row` gives it; ids with no row are left out, as is a table herald does not know.
    fn rows_by_id(&self, table: &str, ids: &[i64]) -> Result<Vec<(i64, serde_json::Value)>>;
    /// Stores a batch's events and failures and takes what it `consumed` off the log, in one
    /// transaction; with `lease`, leases fresh deliveries to the worker. A batch that someone
    /// else consumed meanwhile stores nothing (`StoreError::ConcurrentConsumer`).
    fn commit_consumed_changes(
        &self,
        consumed: &Consumed,
        events: &[NewEvent],
        failures: &[ScriptFailure],
        lease: Option<&DirectLease<'_>>,
    ) -> Result<Stored>;
    /// A reader of the log of its own, for the tracker.
    fn change_feed(&self) -> Result<Box<dyn ChangeFeed>>;
}

/// The tracker's reader of the change log.
pub trait ChangeFeed: Send {
    /// Whether the log may hold changes not yet read: true at once when something was written
    /// since the last look, else after waiting at most about `poll` (SQLite looks at its
    /// `data_version`; PostgreSQL waits for a notification, and says true now and then anyway,
    /// in case one was lost).
    fn wait_for_changes(&mut self, poll: Duration) -> Result<bool>;
    /// A number that changes when the application's schema does (the capture may need renewing).
    fn schema_version(&self) -> Result<i64>;
    /// At most `limit` changes not yet consumed, in the order they are to be consumed.
    fn read_next(&mut self, limit: usize) -> Result<ChangeBatch>;
}

/// Scripts' read-only handle on the application's tables.
pub trait ScriptDb: Send {
    /// Every query until `end_snapshot` reads one snapshot (begun at the first).
    fn begin_snapshot(&self) -> Result<()>;
    fn end_snapshot(&self) -> Result<()>;
    /// Takes the snapshot begun by `begin_snapshot` now and names it, for other handles to read
    /// the very same one (`join_snapshot`), so that several threads render one batch as one;
    /// `None` when the database cannot share a snapshot (then one thread renders the batch).
    fn share_snapshot(&self) -> Result<Option<String>> {
        Ok(None)
    }
    /// Reads, until `end_snapshot`, the snapshot another handle shared.
    fn join_snapshot(&self, shared: &str) -> Result<()> {
        let _ = shared;
        Err(super::StoreError::Connect(
            "this database cannot share a snapshot between connections".into(),
        ))
    }
    /// `interrupted` is asked during long queries; true stops the query (the time budget).
    fn set_interrupt_check(&self, interrupted: Box<dyn FnMut() -> bool + Send>);
    fn query(&self, sql: &str, params: &[Cell], limit: RowLimit) -> Result<Rows, QueryError>;
    /// Whether `query_ahead` can answer at all: where it cannot, a batch's renderers do not keep
    /// track of the rows ahead.
    fn asks_ahead(&self) -> bool {
        false
    }
    /// In a snapshot, the answers of `sql`, whose one parameter is a row id, for the first of
    /// `ids` and as many of the next as it can afford in a part of `time` (what is left of the
    /// asking script's budget), asked in one go (`None` for an id whose rows are past `limit`),
    /// for the next changes of a batch that are about to ask it one by one. `None` where each
    /// query is no round trip (SQLite), or where this statement cannot be asked that way: then
    /// each is asked by `query`, which reports what is wrong with it.
    fn query_ahead(
        &self,
        sql: &str,
        ids: &[i64],
        limit: RowLimit,
        time: Duration,
    ) -> Option<Vec<Option<Rows>>> {
        let _ = (sql, ids, limit, time);
        None
    }
    /// The application's companies and projects, for the scope pickers.
    fn companies(&self) -> Vec<ScopeName> {
        super::query::companies(self)
    }
    fn projects(&self) -> Vec<ScopeName> {
        super::query::projects(self)
    }
    /// The company of a project, by the convention of `events::row_scope`.
    fn company_of_project(&self, project_id: i64) -> Option<i64> {
        super::query::company_of_project(self, project_id)
    }
}

/// The database itself: readiness, upkeep, the application's schema, and handles of its own.
pub trait Operations {
    /// Whether the database answers a trivial read.
    fn ping(&self) -> Result<()>;
    /// Whether herald could write within `wait`.
    fn can_write(&self, wait: Duration) -> Result<bool>;
    /// herald's writes that keep failing, in words; empty while they go through.
    fn write_problems(&self) -> Vec<String>;
    /// The backend's own upkeep, called every half second off the paths events take (SQLite:
    /// the WAL checkpoint).
    fn maintain(&self) -> Result<()>;
    /// Runs the application's idempotent schema script.
    fn apply_schema(&self, file_name: &str, sql: &str) -> Result<()>;
    /// A handle for scripts' queries that cannot write.
    fn script_db(&self) -> Result<Box<dyn ScriptDb>>;
    /// Calls `wake` whenever another process (or this one) stored deliveries that wait for a
    /// claim, until `stop`: a thread of the backend's own, or `None` when the database has no way
    /// to say so (SQLite, one process: the worker looks every second).
    fn listen_for_deliveries(
        &self,
        wake: Box<dyn Fn() + Send>,
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> Result<Option<std::thread::JoinHandle<()>>> {
        let _ = (wake, stop);
        Ok(None)
    }
}
