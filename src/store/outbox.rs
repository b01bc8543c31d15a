//! The outbox: events, one delivery per event per hook, and one attempt row per try.
//!
//! An event's payload is stored once, on the event; deliveries point at it. A delivery is due when
//! `next_attempt_at <= now`; claiming it sets that column to the end of a lease, so a delivery whose
//! worker died becomes due again by itself (at least once, never lost).

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use rusqlite::{OptionalExtension, Transaction, TransactionBehavior};

use super::hooks::delete_hook_in;
use super::{Result, Secrets, Store};
use crate::clock::now_ms;

/// An event ready to store: its payload is already rendered.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// `evt_...`, chosen before rendering so that a payload can carry it.
    pub id: String,
    /// A trigger name (`NewOpportunity`) or a resource event (`Deal.update`): what hooks select.
    pub trigger: String,
    pub row_id: Option<i64>,
    /// The JSON body, exactly as it will be sent.
    pub payload: String,
    /// The change that fired it; `None` when fired by hand.
    pub change_id: Option<i64>,
    /// Which version of the body script rendered it.
    pub script_hash: Option<String>,
    /// The table whose change it is about, when it comes from a change.
    pub resource_name: Option<String>,
    /// `create`, `update` or `delete`, when it comes from a change.
    pub event_type: Option<String>,
    /// The scope of the changed row, which decides which scoped hooks receive it.
    pub company_id: Option<i64>,
    pub project_id: Option<i64>,
}

/// When a hook whose attempts all fail is disabled, as Svix and Stripe do it: not after a burst of
/// failures, but once failures have run, without a single success, for a whole window (5 days by
/// default), with a warning at half of it.
#[derive(Debug, Clone, Copy, Default)]
pub struct FailurePolicy {
    /// `None`: never disable.
    pub disable_after_ms: Option<i64>,
}

impl FailurePolicy {
    /// A run needs at least this many failed attempts, so that two failures far apart are no run.
    pub const MIN_FAILURES: i64 = 3;
}

/// What a batch of attempts did to a hook's standing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookHealthChange {
    /// Failing for half the window: it will be disabled if nothing succeeds.
    Warned {
        hook_id: String,
        failing_since: i64,
        failures: i64,
    },
    /// Failing for the whole window: disabled, its waiting deliveries discarded.
    Disabled {
        hook_id: String,
        failing_since: i64,
        failures: i64,
    },
}

/// The outbox and the hooks at one moment, for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct OutboxSnapshot {
    /// Deliveries not yet final.
    pub waiting: u64,
    pub oldest_waiting_created_at: Option<i64>,
    pub hooks_enabled: u64,
    pub hooks_disabled: u64,
    /// Enabled hooks with deliveries waiting for a retry.
    pub hooks_failing: u64,
}

/// A script that failed while handling a change or rendering an event.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptFailure {
    pub script: String,
    pub line: Option<u32>,
    pub col: Option<u32>,
    pub message: String,
    pub trigger: Option<String>,
    pub table: Option<String>,
    pub row_id: Option<i64>,
    pub change_id: Option<i64>,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Waiting for its first attempt.
    Pending,
    /// An attempt is in flight.
    Delivering,
    /// A target answered 2xx.
    Delivered,
    /// An attempt failed; another is scheduled.
    Retrying,
    /// Every attempt failed, or the target answered 410 Gone.
    Failed,
    /// Dropped without delivery: its hook was deleted or disabled.
    Discarded,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivering => "delivering",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Retrying => "retrying",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Discarded => "discarded",
        }
    }

    pub fn parse(text: &str) -> Option<DeliveryStatus> {
        [
            DeliveryStatus::Pending,
            DeliveryStatus::Delivering,
            DeliveryStatus::Delivered,
            DeliveryStatus::Retrying,
            DeliveryStatus::Failed,
            DeliveryStatus::Discarded,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// A delivery claimed by the worker, with everything needed to send it.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub seq: i64,
    /// Sent as `webhook-id`.
    pub message_id: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub hook_id: String,
    pub target_url: String,
    pub secret: String,
    /// The secret before a rotation, while its grace period lasts: deliveries carry both signatures.
    pub previous_secret: Option<String>,
    pub authorization: Option<String>,
    pub event_id: String,
    pub trigger: String,
    pub payload: String,
    /// When this claim's lease ends: the delivery's `next_attempt_at` while it is ours.
    pub leased_until: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Success,
    /// The target answered, with a status that is not 2xx (3xx included: redirects are not followed).
    HttpError,
    Timeout,
    /// No answer: refused, reset, DNS failure, TLS failure.
    ConnectionError,
    /// herald refused to send: the target resolves to a refused address range.
    Refused,
}

impl AttemptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Success => "success",
            AttemptOutcome::HttpError => "http_error",
            AttemptOutcome::Timeout => "timeout",
            AttemptOutcome::ConnectionError => "connection_error",
            AttemptOutcome::Refused => "refused",
        }
    }
}

/// What happens to a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    Delivered,
    RetryAt(i64),
    Failed,
    /// The target answered 410 Gone: the hook goes, the delivery fails.
    HookGone,
}

#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub delivery_seq: i64,
    /// Where the request went (the hook's URL at the time).
    pub url: String,
    pub hook_id: String,
    /// For the log line of the attempt: which event, and the `webhook-id` the receiver saw.
    pub event_id: String,
    pub message_id: String,
    pub attempt: u32,
    pub started_at: i64,
    pub duration_ms: i64,
    pub outcome: AttemptOutcome,
    pub status_code: Option<u16>,
    /// JSON object of the request headers, secrets masked.
    pub request_headers: String,
    /// JSON object of the response headers.
    pub response_headers: Option<String>,
    pub response_body: Option<String>,
    pub error: Option<String>,
    pub next: NextStep,
}

#[cfg(test)]
impl AttemptRecord {
    /// A first-try success for `claim`, as the worker would record it: for tests of what follows.
    pub(crate) fn delivered(claim: &ClaimedDelivery, started_at: i64) -> AttemptRecord {
        AttemptRecord {
            delivery_seq: claim.seq,
            url: claim.target_url.clone(),
            hook_id: claim.hook_id.clone(),
            event_id: claim.event_id.clone(),
            message_id: claim.message_id.clone(),
            attempt: claim.attempt,
            started_at,
            duration_ms: 1,
            outcome: AttemptOutcome::Success,
            status_code: Some(200),
            request_headers: "{}".into(),
            response_headers: None,
            response_body: None,
            error: None,
            next: NextStep::Delivered,
        }
    }
}

/// An attempt as stored, for the logs and tests.
#[derive(Debug, Clone)]
pub struct StoredAttempt {
    pub attempt: u32,
    pub started_at: i64,
    pub duration_ms: i64,
    pub outcome: String,
    pub status_code: Option<u16>,
    pub request_headers: String,
    pub response_headers: Option<String>,
    pub response_body: Option<String>,
    pub error: Option<String>,
}

/// How many deliveries the delivery worker can hold (claimed and ready, or in flight), per hook and
/// in all, and how many it holds. Every lease is taken against it, by a claim or straight from the
/// transaction that stores fresh deliveries, and both run under the writer's lock. A hook's room
/// may be set apart from the others' (the worker gives a slow hook less, so that what it holds
/// can start before the leases end). Closed (no room) while no worker runs.
#[derive(Debug)]
pub struct Capacity {
    /// A hook's room unless set for that hook.
    per_hook: usize,
    total: usize,
    /// How many of a hook's deliveries a claim takes before every other waiting hook has had its
    /// turn: see `claim_in`.
    turn: usize,
    state: std::sync::Mutex<CapacityState>,
}

#[derive(Debug, Default)]
struct CapacityState {
    open: bool,
    held: HashMap<String, usize>,
    /// Hooks whose room is not `per_hook`.
    room: HashMap<String, usize>,
    total_held: usize,
    /// The hook the last claim took from: the next claim's walk over the waiting hooks starts
    /// after it (see `claim_in`).
    last_claimed_hook: String,
}

impl Capacity {
    /// Closed until `open`.
    pub fn new(per_hook: usize, total: usize) -> Capacity {
        Capacity {
            per_hook,
            total,
            turn: per_hook,
            state: Default::default(),
        }
    }

    /// A claim takes at most `turn` deliveries of a hook (the worker gives it one round of its
    /// slots) until every waiting hook has had that much, and only then what room is left.
    pub fn taking_turns_of(mut self, turn: usize) -> Capacity {
        self.turn = turn.max(1);
        self
    }

    fn state(&self) -> std::sync::MutexGuard<'_, CapacityState> {
        // The counts are updated in single steps; a panic elsewhere leaves them whole.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn open(&self) {
        self.state().open = true;
    }

    /// No more room until opened again; what is held stays counted until given back.
    pub fn close(&self) {
        self.state().open = false;
    }

    /// Sets how many deliveries of `hook` may be held at once (by default, `per_hook`). Lowering
    /// it leaves what is held alone; nothing more is leased until the hook is below it.
    pub fn set_room(&self, hook: &str, room: usize) {
        let mut state = self.state();
        if room == self.per_hook {
            state.room.remove(hook);
        } else if let Some(known) = state.room.get_mut(hook) {
            *known = room;
        } else {
            state.room.insert(hook.to_owned(), room);
        }
    }

    /// Gives `hook` the default room again.
    pub fn reset_room(&self, hook: &str) {
        self.state().room.remove(hook);
    }

    /// How many deliveries of `hook` may be held at once.
    #[cfg(test)]
    pub fn room(&self, hook: &str) -> usize {
        self.room_in(&self.state(), hook)
    }

    fn room_in(&self, state: &CapacityState, hook: &str) -> usize {
        state.room.get(hook).copied().unwrap_or(self.per_hook)
    }

    /// How many more deliveries of `hook` may be leased now.
    pub fn free_for(&self, hook: &str) -> usize {
        let state = self.state();
        if !state.open {
            return 0;
        }
        let held = state.held.get(hook).copied().unwrap_or(0);
        self.room_in(&state, hook)
            .saturating_sub(held)
            .min(self.total.saturating_sub(state.total_held))
    }

    /// How many more deliveries may be leased now, whatever their hooks.
    pub fn free(&self) -> usize {
        let state = self.state();
        if !state.open {
            return 0;
        }
        self.total.saturating_sub(state.total_held)
    }

    /// Counts one more delivery of `hook` held, if there is room.
    fn take(&self, hook: &str) -> bool {
        let mut state = self.state();
        let held = state.held.get(hook).copied().unwrap_or(0);
        if !state.open || held >= self.room_in(&state, hook) || state.total_held >= self.total {
            return false;
        }
        state.total_held += 1;
        match state.held.get_mut(hook) {
            Some(held) => *held += 1,
            None => {
                state.held.insert(hook.to_owned(), 1);
            }
        }
        true
    }

    /// A held delivery of `hook` is no longer held: its attempt was recorded, it went back to the
    /// outbox, or its lease was never committed.
    pub fn give_back(&self, hook: &str) {
        let mut state = self.state();
        if let Some(held) = state.held.get_mut(hook) {
            *held -= 1;
            if *held == 0 {
                state.held.remove(hook);
            }
            state.total_held -= 1;
        }
    }

    fn last_claimed_hook(&self) -> String {
        self.state().last_claimed_hook.clone()
    }

    fn claimed_from(&self, hook: &str) {
        let mut state = self.state();
        state.last_claimed_hook.clear();
        state.last_claimed_hook.push_str(hook);
    }

    /// Deliveries held, of `hook` or of every hook.
    pub fn held(&self, hook: Option<&str>) -> usize {
        let state = self.state();
        match hook {
            Some(hook) => state.held.get(hook).copied().unwrap_or(0),
            None => state.total_held,
        }
    }
}

/// Room taken in a transaction: given back unless the transaction committed.
pub(super) struct Taken<'a> {
    capacity: &'a Capacity,
    /// Per hook, how many, in runs: a claim takes a hook's deliveries together, and a batch of
    /// events mostly goes to the same hooks in turn.
    hooks: Vec<(String, usize)>,
    committed: bool,
}

impl<'a> Taken<'a> {
    pub(super) fn new(capacity: &'a Capacity) -> Taken<'a> {
        Taken {
            capacity,
            hooks: Vec::new(),
            committed: false,
        }
    }

    /// The transaction committed: what it took stays held.
    pub(super) fn keep(mut self) {
        self.committed = true;
    }

    fn take(&mut self, hook: &str) -> bool {
        if !self.capacity.take(hook) {
            return false;
        }
        match self.hooks.last_mut() {
            Some((last, n)) if last == hook => *n += 1,
            _ => self.hooks.push((hook.to_owned(), 1)),
        }
        true
    }
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        if !self.committed {
            for (hook, n) in &self.hooks {
                for _ in 0..*n {
                    self.capacity.give_back(hook);
                }
            }
        }
    }
}

/// Fresh deliveries leased to the worker in the transaction that stores them, while it has room:
/// they go out without waiting for a claim.
pub struct DirectLease<'a> {
    pub capacity: &'a Capacity,
    pub lease_ms: i64,
}

/// What storing events did.
#[derive(Debug, Default)]
pub struct Stored {
    /// Deliveries created, leased or not.
    pub deliveries: usize,
    /// The deliveries leased straight to the worker, for it to send.
    pub leased: Vec<ClaimedDelivery>,
}

/// What a delivery is signed and authorized with: sealed as the hook's row keeps it, or opened. The
/// previous secret is there only while its grace period lasts.
#[derive(Clone)]
struct HookSecrets {
    secret: String,
    authorization: Option<String>,
    previous_secret: Option<String>,
}

impl HookSecrets {
    /// The opened copy of sealed secrets.
    fn open(&self, secrets: &Secrets) -> Result<HookSecrets> {
        let open = |sealed: &Option<String>| sealed.as_deref().map(|s| secrets.open(s)).transpose();
        Ok(HookSecrets {
            secret: secrets.open(&self.secret)?,
            authorization: open(&self.authorization)?,
            previous_secret: open(&self.previous_secret)?,
        })
    }
}

/// An enabled hook that receives an event, as the fan-out finds it; its secrets are opened only
/// once a delivery of it is leased, and then once per batch.
struct Receiver {
    id: String,
    target_url: String,
    sealed: HookSecrets,
    opened: Option<HookSecrets>,
}

impl Receiver {
    fn open(&mut self, secrets: &Secrets) -> Result<HookSecrets> {
        if self.opened.is_none() {
            self.opened = Some(self.sealed.open(secrets)?);
        }
        Ok(self.opened.clone().expect("opened above"))
    }
}

/// An event's trigger and scope: which hooks receive it depends on nothing else.
type Audience<'a> = (&'a str, Option<i64>, Option<i64>);

/// Stores events and fans each out to the enabled hooks that select it and whose scope it is in. An
/// event no hook receives is not stored: there is nobody to deliver it to and no history to show it
/// in. With `lease`, the deliveries the worker has room for are stored leased and returned, the rest
/// wait for a claim.
pub(super) fn insert_events(
    tx: &Transaction<'_>,
    secrets: &Secrets,
    events: &[NewEvent],
    mut lease: Option<(&mut Taken<'_>, i64)>,
) -> Result<Stored> {
    let mut stored = Stored::default();
    if events.is_empty() {
        return Ok(stored);
    }
    let now = now_ms();
    let mut insert_event = tx.prepare_cached(
        "INSERT INTO herald_events (id, trigger_name, row_id, payload, change_id, script_hash,
                                    resource_name, event_type, company_id, project_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    let mut insert_delivery = tx.prepare_cached(
        "INSERT INTO herald_deliveries (id, event_seq, hook_id, status, attempts, next_attempt_at, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6, ?6)",
    )?;
    // A hook without a scope takes everything; a project-level hook its project's events; a
    // company-level hook its company's.
    let mut receivers = tx.prepare_cached(
        "SELECT h.id, h.target_url, h.secret, h.authorization,
                CASE WHEN h.previous_secret_until > ?4 THEN h.previous_secret END
         FROM herald_hook_events e JOIN herald_hooks h ON h.id = e.hook_id
         WHERE e.event_name = ?1 AND h.enabled = 1
           AND ((h.company_id IS NULL AND h.project_id IS NULL)
                OR (h.project_id IS NOT NULL AND h.project_id = ?3)
                OR (h.project_id IS NULL AND h.company_id = ?2))
         ORDER BY h.id",
    )?;
    // A batch's events mostly share a few triggers and scopes: look each combination up once.
    let mut receivers_of: HashMap<Audience<'_>, Vec<Receiver>> = HashMap::new();
    for event in events {
        let key = (event.trigger.as_str(), event.company_id, event.project_id);
        let hooks = match receivers_of.entry(key) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(new) => new.insert(
                receivers
                    .query_map(
                        (&event.trigger, event.company_id, event.project_id, now),
                        |r| {
                            Ok(Receiver {
                                id: r.get(0)?,
                                target_url: r.get(1)?,
                                sealed: HookSecrets {
                                    secret: r.get(2)?,
                                    authorization: r.get(3)?,
                                    previous_secret: r.get(4)?,
                                },
                                opened: None,
                            })
                        },
                    )?
                    .collect::<rusqlite::Result<Vec<Receiver>>>()?,
            ),
        };
        if hooks.is_empty() {
            continue;
        }
        insert_event.execute((
            &event.id,
            &event.trigger,
            event.row_id,
            &event.payload,
            event.change_id,
            &event.script_hash,
            &event.resource_name,
            &event.event_type,
            event.company_id,
            event.project_id,
            now,
        ))?;
        let event_seq = tx.last_insert_rowid();
        for hook in hooks.iter_mut() {
            let message_id = crate::ids::message_id();
            let leased = match lease.as_mut() {
                Some((taken, lease_ms)) => taken.take(&hook.id).then_some(*lease_ms),
                None => None,
            };
            let (status, next_attempt_at) = match leased {
                Some(lease_ms) => (DeliveryStatus::Delivering, now + lease_ms),
                None => (DeliveryStatus::Pending, now),
            };
            insert_delivery.execute((
                &message_id,
                event_seq,
                &hook.id,
                status.as_str(),
                next_attempt_at,
                now,
            ))?;
            stored.deliveries += 1;
            if leased.is_some() {
                let opened = hook.open(secrets)?;
                stored.leased.push(ClaimedDelivery {
                    seq: tx.last_insert_rowid(),
                    message_id,
                    attempt: 1,
                    hook_id: hook.id.clone(),
                    target_url: hook.target_url.clone(),
                    secret: opened.secret,
                    previous_secret: opened.previous_secret,
                    authorization: opened.authorization,
                    event_id: event.id.clone(),
                    trigger: event.trigger.clone(),
                    payload: event.payload.clone(),
                    leased_until: next_attempt_at,
                });
            }
        }
    }
    Ok(stored)
}

pub(super) fn insert_failures(tx: &Transaction<'_>, failures: &[ScriptFailure]) -> Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO herald_script_failures
         (script, line, col, message, trigger_name, table_name, row_id, change_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    let now = now_ms();
    for f in failures {
        stmt.execute((
            &f.script,
            f.line,
            f.col,
            &f.message,
            &f.trigger,
            &f.table,
            f.row_id,
            f.change_id,
            now,
        ))?;
    }
    Ok(())
}

impl Store {
    /// Stores events fired outside the change log (by hand, by the API) and fans them out.
    pub fn insert_events(&self, events: &[NewEvent]) -> Result<usize> {
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let stored = insert_events(&tx, self.secrets(), events, None)?;
        tx.commit()?;
        Ok(stored.deliveries)
    }

    /// Claims up to `limit` due deliveries, leasing each until `now + lease_ms`, for a worker that
    /// holds `in_flight` and at most `per_hook_limit` per hook: `record_and_claim` without records,
    /// for tests and tools.
    pub fn claim_due(
        &self,
        now: i64,
        lease_ms: i64,
        limit: usize,
        in_flight: &HashMap<String, usize>,
        per_hook_limit: usize,
    ) -> Result<ClaimOutcome> {
        let capacity = Capacity::new(per_hook_limit, usize::MAX);
        capacity.open();
        for (hook, held) in in_flight {
            for _ in 0..*held {
                capacity.take(hook);
            }
        }
        let claim = Claim {
            now,
            lease_ms,
            limit,
            capacity: &capacity,
        };
        Ok(self
            .record_and_claim(&[], &[], &FailurePolicy::default(), &claim)?
            .0)
    }

    /// Records finished attempts and claims the next deliveries in one transaction: the worker's
    /// step after attempts come back, at half the commits of doing the two apart. Hooks are served
    /// oldest due first, each up to its room in the claim's `Capacity`, so a hook with a large
    /// backlog or a slow target never hides another hook's deliveries. Deliveries whose hook is
    /// gone or disabled are discarded on the way. Returns what was claimed (counted in the
    /// capacity) and what the attempts did to their hooks' standing.
    ///
    /// The claim costs one index seek per hook with waiting deliveries plus the rows claimed,
    /// however large the backlog: nothing here scans the outbox. The same walk tells when to claim
    /// again.
    ///
    /// `released` are deliveries the worker held but will not send (see `release_claims`): handed
    /// back first, so the claim may take them again.
    pub fn record_and_claim(
        &self,
        records: &[AttemptRecord],
        released: &[ClaimedDelivery],
        policy: &FailurePolicy,
        claim: &Claim<'_>,
    ) -> Result<(ClaimOutcome, Vec<HookHealthChange>)> {
        let result = (|| {
            let mut conn = self.writer();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let health = record_in(&tx, records, policy)?;
            release_in(&tx, released.iter(), claim.now)?;
            let mut taken = Taken::new(claim.capacity);
            let claimed = claim_in(
                &tx,
                self.secrets(),
                claim.now,
                claim.lease_ms,
                claim.limit,
                &mut taken,
            )?;
            tx.commit()?;
            taken.keep();
            Ok((claimed, health))
        })();
        self.noting("recording attempts", result)
    }

    /// Hands claimed deliveries that were never sent back to the outbox, due at `now`: what a
    /// stopping worker held ready beyond its attempts in flight, or the ready deliveries of a hook
    /// that was disabled. Their attempt counts are untouched, so they go out as if never claimed.
    /// A claim whose lease ran out (and which someone may have claimed again since) is left alone.
    pub fn release_claims(&self, claims: &[&ClaimedDelivery], now: i64) -> Result<()> {
        if claims.is_empty() {
            return Ok(());
        }
        let result = (|| {
            let mut conn = self.writer();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            release_in(&tx, claims.iter().copied(), now)?;
            tx.commit()?;
            Ok(())
        })();
        self.noting("releasing claims", result)
    }

    /// Records finished attempts and moves their deliveries on, in one transaction.
    pub fn record_attempts(
        &self,
        records: &[AttemptRecord],
        policy: &FailurePolicy,
    ) -> Result<Vec<HookHealthChange>> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let result = (|| {
            let mut conn = self.writer();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let health = record_in(&tx, records, policy)?;
            tx.commit()?;
            Ok(health)
        })();
        self.noting("recording attempts", result)
    }

    /// What `/metrics` reports about the outbox and the hooks.
    pub fn outbox_snapshot(&self) -> Result<OutboxSnapshot> {
        let conn = self.writer();
        let (waiting, oldest): (i64, Option<i64>) = conn.query_row(
            "SELECT count(*), min(created_at) FROM herald_deliveries WHERE next_attempt_at IS NOT NULL",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let (enabled, disabled): (i64, i64) = conn.query_row(
            "SELECT coalesce(sum(enabled = 1), 0), coalesce(sum(enabled = 0), 0) FROM herald_hooks",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let failing: i64 = conn.query_row(
            "SELECT count(DISTINCT d.hook_id) FROM herald_deliveries d
             JOIN herald_hooks h ON h.id = d.hook_id
             WHERE d.next_attempt_at IS NOT NULL AND d.status = 'retrying' AND h.enabled = 1",
            [],
            |r| r.get(0),
        )?;
        Ok(OutboxSnapshot {
            waiting: waiting as u64,
            oldest_waiting_created_at: oldest,
            hooks_enabled: enabled as u64,
            hooks_disabled: disabled as u64,
            hooks_failing: failing as u64,
        })
    }

    /// The status of one delivery, by its message id.
    pub fn delivery_status(&self, message_id: &str) -> Result<Option<DeliveryStatus>> {
        let conn = self.writer();
        let status: Option<String> = conn
            .query_row(
                "SELECT status FROM herald_deliveries WHERE id = ?1",
                [message_id],
                |r| r.get(0),
            )
            .optional()?;
        Ok(status.as_deref().and_then(DeliveryStatus::parse))
    }

    /// Every attempt made for one delivery, in order.
    pub fn attempts_of(&self, message_id: &str) -> Result<Vec<StoredAttempt>> {
        let conn = self.writer();
        let mut stmt = conn.prepare_cached(
            "SELECT a.attempt, a.started_at, a.duration_ms, a.outcome, a.status_code,
                    a.request_headers, a.response_headers, a.response_body, a.error
             FROM herald_attempts a JOIN herald_deliveries d ON d.seq = a.delivery_seq
             WHERE d.id = ?1 ORDER BY a.seq",
        )?;
        let rows = stmt
            .query_map([message_id], |r| {
                Ok(StoredAttempt {
                    attempt: r.get(0)?,
                    started_at: r.get(1)?,
                    duration_ms: r.get(2)?,
                    outcome: r.get(3)?,
                    status_code: r.get(4)?,
                    request_headers: r.get(5)?,
                    response_headers: r.get(6)?,
                    response_body: r.get(7)?,
                    error: r.get(8)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// The newest script failures, newest first.
    pub fn recent_script_failures(&self, limit: usize) -> Result<Vec<ScriptFailure>> {
        let conn = self.writer();
        let mut stmt = conn.prepare_cached(
            "SELECT script, line, col, message, trigger_name, table_name, row_id, change_id
             FROM herald_script_failures ORDER BY seq DESC LIMIT ?1",
        )?;
        let rows = stmt
            .query_map([limit as i64], |r| {
                Ok(ScriptFailure {
                    script: r.get(0)?,
                    line: r.get(1)?,
                    col: r.get(2)?,
                    message: r.get(3)?,
                    trigger: r.get(4)?,
                    table: r.get(5)?,
                    row_id: r.get(6)?,
                    change_id: r.get(7)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }
}

/// What a claim brought back.
#[derive(Debug, Default)]
pub struct ClaimOutcome {
    pub deliveries: Vec<ClaimedDelivery>,
    /// When to claim again: `now` or earlier when the claim was full (its limit, or the worker's
    /// room) with more hooks waiting, or left a hook's deliveries due, else
    /// the earliest time a delivery of a hook with room falls due (the end of a lease taken by an
    /// earlier claim counts; those taken by this one, and a disabled hook's, do not); `None` when
    /// nothing waits for a hook with room, or when nothing was to be claimed. The worker looks
    /// again within a second whatever this says.
    pub next_due: Option<i64>,
    /// Due deliveries wait for hooks the worker has no room for: a slot that frees has something
    /// to claim.
    pub due_without_room: bool,
}

/// What to claim: at most `limit` deliveries due at `now`, leased for `lease_ms`, each against
/// room in `capacity`.
pub struct Claim<'a> {
    pub now: i64,
    pub lease_ms: i64,
    pub limit: usize,
    pub capacity: &'a Capacity,
}

fn claim_in(
    tx: &Transaction<'_>,
    secrets: &Secrets,
    now: i64,
    lease_ms: i64,
    limit: usize,
    taken: &mut Taken<'_>,
) -> Result<ClaimOutcome> {
    if limit == 0 {
        return Ok(ClaimOutcome::default());
    }
    let capacity = taken.capacity;
    // Hooks with room whose deliveries are not due yet: their oldest is when to look again.
    let mut next_due: Option<i64> = None;
    let mut due_without_room = false;
    let mut claimed = Vec::with_capacity(limit);
    let mut hook_stmt = tx.prepare_cached(
        "SELECT target_url, secret, authorization,
                CASE WHEN previous_secret_until > ?2 THEN previous_secret END
         FROM herald_hooks WHERE id = ?1 AND enabled = 1",
    )?;
    // One row more than wanted, due or not: it says when the hook's next delivery falls due, so
    // that knowing when to look again costs no second walk over the hooks.
    //
    // `LIMIT CAST(?2 ...)`, not `LIMIT ?2`: once SQLite prepares a statement again (after any
    // schema change, the application's included), a bound LIMIT ties the new plan to the values
    // bound that time, and from then on every claim prepares the statement anew: one parse and
    // plan per hook per claim. The test `claims_and_records_keep_their_prepared_statements`
    // watches for it.
    let mut rows_stmt = tx.prepare_cached(
        "SELECT d.seq, d.id, d.attempts, e.id, e.trigger_name, e.payload, d.next_attempt_at
         FROM herald_deliveries d JOIN herald_events e ON e.seq = d.event_seq
         WHERE d.hook_id = ?1 AND d.next_attempt_at IS NOT NULL
         ORDER BY d.next_attempt_at LIMIT CAST(?2 AS INTEGER)",
    )?;
    let mut discard = tx.prepare_cached(
        "UPDATE herald_deliveries SET status = 'discarded', next_attempt_at = NULL, updated_at = ?2
         WHERE hook_id = ?1 AND next_attempt_at IS NOT NULL
           AND next_attempt_at <= CAST(?2 AS INTEGER)",
    )?;
    let mut lease = tx.prepare_cached(
        "UPDATE herald_deliveries SET status = 'delivering', next_attempt_at = ?2, updated_at = ?3
         WHERE seq = ?1",
    )?;
    // The hooks take turns: the walk starts after the hook the last claim took from and stops
    // once the claim is full, so that a claim costs a seek per hook it takes from rather than one
    // per waiting hook (a thousand hooks with a deep outbox made every claim walk them all, and
    // draining slowed as the outbox grew). A walk that goes all the way round sees every hook.
    //
    // A turn is one round of a hook's slots (`Capacity::turn`): the walk takes that much of each
    // hook, and only once it went all the way round with room to spare do the hooks it cut short
    // get the rest of their room. So a deep outbox of many hooks is claimed breadth first, an
    // event's deliveries to many hooks together: they were stored side by side, so a claim dirties
    // a few pages instead of one per delivery, and no hook waits behind another's whole backlog.
    // A lone busy hook still fills its queue.
    let mut walk = WaitingHooks::after(capacity.last_claimed_hook());
    // Hooks with due deliveries left after their turn, and room for them.
    let mut cut_short: Vec<String> = Vec::new();
    let mut second_round: Option<std::vec::IntoIter<String>> = None;
    loop {
        let (hook_id, oldest) = match second_round.as_mut() {
            None => match walk.next(tx)? {
                Some(found) => found,
                None if cut_short.is_empty() => break,
                None => {
                    second_round = Some(std::mem::take(&mut cut_short).into_iter());
                    continue;
                }
            },
            // The first walk found these due.
            Some(hooks) => match hooks.next() {
                Some(hook) => (hook, now),
                None => break,
            },
        };
        let turn = if second_round.is_some() {
            usize::MAX
        } else {
            capacity.turn
        };
        if claimed.len() == limit || capacity.free() == 0 {
            // Full, and another hook waits: look again at once, or once a slot frees.
            next_due = Some(now);
            break;
        }
        let free = capacity.free_for(&hook_id);
        if free == 0 {
            due_without_room |= oldest <= now;
            continue;
        }
        if oldest > now {
            next_due = Some(next_due.map_or(oldest, |t| t.min(oldest)));
            continue;
        }
        let wanted = free.min(turn).min(limit - claimed.len());
        let cut_by_turn = turn < free.min(limit - claimed.len());
        let hook: Option<(String, HookSecrets)> = hook_stmt
            .query_row((&hook_id, now), |r| {
                Ok((
                    r.get(0)?,
                    HookSecrets {
                        secret: r.get(1)?,
                        authorization: r.get(2)?,
                        previous_secret: r.get(3)?,
                    },
                ))
            })
            .optional()?;
        let Some((target_url, sealed)) = hook else {
            discard.execute((&hook_id, now))?;
            continue;
        };
        let opened = sealed.open(secrets)?;
        let claimed_before = claimed.len();
        // The row past what is taken is read for its time only, not its payload.
        let mut read = 0;
        let rows = rows_stmt
            .query_map((&hook_id, wanted as i64 + 1), |r| {
                let due_at = r.get::<_, i64>(6)?;
                read += 1;
                if due_at > now || read > wanted {
                    return Ok((due_at, None));
                }
                Ok((
                    due_at,
                    Some((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, u32>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                    )),
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        for (due_at, row) in rows {
            let Some((seq, message_id, attempts, event_id, trigger, payload)) = row else {
                // Not due yet, or the claim is full: when it falls due matters if the hook has
                // room for it after what it just got; if it has none, a slot that frees has it
                // to claim. Due but past the hook's turn: the second round takes it.
                if due_at <= now && cut_by_turn {
                    cut_short.push(hook_id.clone());
                } else if capacity.free_for(&hook_id) > 0 {
                    next_due = Some(next_due.map_or(due_at, |t| t.min(due_at)));
                } else {
                    due_without_room |= due_at <= now;
                }
                break;
            };
            if !taken.take(&hook_id) {
                break;
            }
            lease.execute((seq, now + lease_ms, now))?;
            claimed.push(ClaimedDelivery {
                seq,
                message_id,
                attempt: attempts + 1,
                hook_id: hook_id.clone(),
                target_url: target_url.clone(),
                secret: opened.secret.clone(),
                previous_secret: opened.previous_secret.clone(),
                authorization: opened.authorization.clone(),
                event_id,
                trigger,
                payload,
                leased_until: now + lease_ms,
            });
        }
        if claimed.len() > claimed_before {
            capacity.claimed_from(&hook_id);
        }
    }
    Ok(ClaimOutcome {
        deliveries: claimed,
        next_due,
        due_without_room,
    })
}

fn release_in<'c>(
    tx: &Transaction<'_>,
    claims: impl Iterator<Item = &'c ClaimedDelivery>,
    now: i64,
) -> Result<()> {
    let mut release = tx.prepare_cached(
        "UPDATE herald_deliveries
         SET status = CASE WHEN attempts = 0 THEN 'pending' ELSE 'retrying' END,
             next_attempt_at = ?3, updated_at = ?3
         WHERE seq = ?1 AND status = 'delivering' AND next_attempt_at = ?2",
    )?;
    for claim in claims {
        release.execute((claim.seq, claim.leased_until, now))?;
    }
    Ok(())
}

fn record_in(
    tx: &Transaction<'_>,
    records: &[AttemptRecord],
    policy: &FailurePolicy,
) -> Result<Vec<HookHealthChange>> {
    let mut changes = Vec::new();
    if records.is_empty() {
        return Ok(changes);
    }
    let now = now_ms();
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO herald_attempts
             (delivery_seq, attempt, started_at, duration_ms, outcome, status_code,
              request_headers, response_headers, response_body, error, url)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?;
        let mut update = tx.prepare_cached(
            "UPDATE herald_deliveries SET status = ?2, attempts = ?3, next_attempt_at = ?4, updated_at = ?5
             WHERE seq = ?1",
        )?;
        // Hooks whose run of failures a success in these records already ended: their later
        // successes have nothing to reset (a trip records many attempts to a busy hook).
        let mut clean: HashSet<&str> = HashSet::new();
        for r in records {
            insert.execute((
                r.delivery_seq,
                r.attempt,
                r.started_at,
                r.duration_ms,
                r.outcome.as_str(),
                r.status_code,
                &r.request_headers,
                &r.response_headers,
                &r.response_body,
                &r.error,
                &r.url,
            ))?;
            let (status, next_at) = match r.next {
                NextStep::Delivered => (DeliveryStatus::Delivered, None),
                NextStep::RetryAt(at) => (DeliveryStatus::Retrying, Some(at)),
                NextStep::Failed | NextStep::HookGone => (DeliveryStatus::Failed, None),
            };
            update.execute((r.delivery_seq, status.as_str(), r.attempt, next_at, now))?;
            if r.outcome == AttemptOutcome::Success {
                if clean.insert(&r.hook_id) {
                    end_failure_run(tx, &r.hook_id)?;
                }
            } else {
                clean.remove(r.hook_id.as_str());
                if let Some(change) = extend_failure_run(tx, r, policy, now)? {
                    changes.push(change);
                }
            }
        }
    }
    for r in records.iter().filter(|r| r.next == NextStep::HookGone) {
        let origin: Option<String> = tx
            .query_row(
                "SELECT origin FROM herald_hooks WHERE id = ?1",
                [&r.hook_id],
                |row| row.get(0),
            )
            .optional()?;
        match origin.as_deref() {
            Some("subscription") => {
                delete_hook_in(tx, &r.hook_id)?;
                tracing::warn!(hook_id = %r.hook_id, "target answered 410 Gone: subscription removed");
            }
            Some(_) => {
                tx.execute(
                    "UPDATE herald_hooks SET enabled = 0, disabled_reason = ?2 WHERE id = ?1",
                    (&r.hook_id, "the target answered 410 Gone"),
                )?;
                tracing::warn!(hook_id = %r.hook_id, "target answered 410 Gone: hook disabled");
            }
            None => {}
        }
    }
    Ok(changes)
}

/// A success ends a hook's run of failures.
fn end_failure_run(tx: &Transaction<'_>, hook_id: &str) -> Result<()> {
    tx.prepare_cached(
        "UPDATE herald_hooks SET failing_since = NULL, failures = 0, failure_warned = 0
         WHERE id = ?1 AND failing_since IS NOT NULL",
    )?
    .execute([hook_id])?;
    Ok(())
}

/// A failure starts or extends a hook's run of failures; a run that spans the policy's window
/// disables the hook, with a warning at half the window.
fn extend_failure_run(
    tx: &Transaction<'_>,
    record: &AttemptRecord,
    policy: &FailurePolicy,
    now: i64,
) -> Result<Option<HookHealthChange>> {
    let run: Option<(i64, i64, bool, bool)> = tx
        .prepare_cached(
            "UPDATE herald_hooks SET failing_since = coalesce(failing_since, ?2), failures = failures + 1
             WHERE id = ?1
             RETURNING failing_since, failures, failure_warned, enabled",
        )?
        .query_row((&record.hook_id, record.started_at), |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let (Some(window), Some((failing_since, failures, warned, true))) =
        (policy.disable_after_ms, run)
    else {
        return Ok(None);
    };
    let failing_for = now - failing_since;
    if failing_for >= window && failures >= FailurePolicy::MIN_FAILURES {
        let reason = format!(
            "every attempt failed since {} ({failures} attempts)",
            crate::clock::rfc3339_ms(failing_since)
        );
        tx.execute(
            "UPDATE herald_hooks SET enabled = 0, disabled_reason = ?2, updated_at = ?3 WHERE id = ?1",
            (&record.hook_id, &reason, now),
        )?;
        super::hooks::discard_waiting(tx, &record.hook_id, now)?;
        return Ok(Some(HookHealthChange::Disabled {
            hook_id: record.hook_id.clone(),
            failing_since,
            failures,
        }));
    }
    if !warned && failing_for >= window / 2 {
        tx.execute(
            "UPDATE herald_hooks SET failure_warned = 1 WHERE id = ?1",
            [&record.hook_id],
        )?;
        return Ok(Some(HookHealthChange::Warned {
            hook_id: record.hook_id.clone(),
            failing_since,
            failures,
        }));
    }
    Ok(None)
}

/// The hooks with waiting deliveries (due or not, leased ones included), each with its earliest
/// `next_attempt_at`, in id order from the one after `start` round to `start` itself: a skip scan
/// over the index on `(hook_id, next_attempt_at)`, one seek per hook, as far as the caller goes.
struct WaitingHooks {
    start: String,
    after: String,
    wrapped: bool,
    done: bool,
}

impl WaitingHooks {
    fn after(start: String) -> WaitingHooks {
        WaitingHooks {
            after: start.clone(),
            wrapped: start.is_empty(),
            start,
            done: false,
        }
    }

    fn next(&mut self, conn: &rusqlite::Connection) -> Result<Option<(String, i64)>> {
        let mut stmt = conn.prepare_cached(
            "SELECT hook_id, next_attempt_at FROM herald_deliveries INDEXED BY herald_deliveries_waiting
             WHERE next_attempt_at IS NOT NULL AND hook_id > ?1
             ORDER BY hook_id, next_attempt_at LIMIT 1",
        )?;
        while !self.done {
            let found = stmt
                .query_row([&self.after], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                })
                .optional()?;
            match found {
                // Round again past the start: every hook was seen.
                Some((hook, _)) if self.wrapped && !self.start.is_empty() && hook > self.start => {
                    self.done = true;
                }
                Some((hook, oldest)) => {
                    self.after.clone_from(&hook);
                    return Ok(Some((hook, oldest)));
                }
                None if self.wrapped => self.done = true,
                None => {
                    self.wrapped = true;
                    self.after.clear();
                }
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{HookOrigin, NewHook, Scope, StoreError};

    fn setup() -> (tempfile::TempDir, Store, String) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        let hook = store
            .create_hook(NewHook {
                target_url: "http://127.0.0.1:9/x".into(),
                secret: "whsec_c2VjcmV0".into(),
                authorization: None,
                description: String::new(),
                origin: HookOrigin::Subscription,
                scope: Scope::Everything,
                enabled: true,
                events: vec!["NewOpportunity".into()],
                made_by: None,
            })
            .unwrap();
        (dir, store, hook.id)
    }

    fn event(trigger: &str) -> NewEvent {
        NewEvent {
            id: crate::ids::event_id(),
            trigger: trigger.into(),
            row_id: Some(1),
            payload: "{\"id\":1}".into(),
            change_id: None,
            script_hash: None,
            resource_name: None,
            event_type: None,
            company_id: None,
            project_id: None,
        }
    }

    #[test]
    fn a_hooks_run_of_failures_follows_its_records_in_order_within_one_batch() {
        let (_dir, store, hook) = setup();
        for _ in 0..3 {
            store.insert_events(&[event("NewOpportunity")]).unwrap();
        }
        let now = now_ms();
        let claimed = store
            .claim_due(now, 60_000, 10, &HashMap::new(), 10)
            .unwrap()
            .deliveries;
        assert_eq!(claimed.len(), 3);
        let failed = |claim: &ClaimedDelivery, started_at: i64| AttemptRecord {
            outcome: AttemptOutcome::HttpError,
            status_code: Some(500),
            next: NextStep::RetryAt(now + 60_000),
            ..AttemptRecord::delivered(claim, started_at)
        };
        let run = |store: &Store| {
            let hook = store.get_hook(&hook).unwrap().unwrap();
            (hook.failing_since, hook.failures)
        };
        let policy = FailurePolicy::default();
        // Success, failure, success: the last success ends the run the failure began.
        store
            .record_attempts(
                &[
                    AttemptRecord::delivered(&claimed[0], now),
                    failed(&claimed[1], now + 1),
                    AttemptRecord::delivered(&claimed[2], now + 2),
                ],
                &policy,
            )
            .unwrap();
        assert_eq!(run(&store), (None, 0));
        // Failure, success, failure: the run starts again at the last failure.
        store
            .record_attempts(
                &[
                    failed(&claimed[0], now + 3),
                    AttemptRecord::delivered(&claimed[1], now + 4),
                    failed(&claimed[2], now + 5),
                ],
                &policy,
            )
            .unwrap();
        assert_eq!(run(&store), (Some(now + 5), 1));
    }

    #[test]
    fn events_fan_out_to_hooks_of_their_trigger_only() {
        let (_dir, store, _hook) = setup();
        assert_eq!(
            store
                .insert_events(&[event("NewOpportunity"), event("DealWon")])
                .unwrap(),
            1
        );
    }

    #[test]
    fn a_claim_leases_and_respects_the_per_hook_limit() {
        let (_dir, store, hook) = setup();
        for _ in 0..5 {
            store.insert_events(&[event("NewOpportunity")]).unwrap();
        }
        let now = now_ms();
        let none = HashMap::new();
        let first = store.claim_due(now, 60_000, 10, &none, 2).unwrap();
        assert_eq!(first.deliveries.len(), 2);
        assert_eq!(first.deliveries[0].attempt, 1);
        // The hook has no room left: nothing to look again for.
        assert_eq!(first.next_due, None);
        let in_flight = HashMap::from([(hook.clone(), 2)]);
        assert!(store
            .claim_due(now, 60_000, 10, &in_flight, 2)
            .unwrap()
            .deliveries
            .is_empty());
        // Before anything is due, the claim says when the oldest will be.
        let early = store.claim_due(now - 5_000, 60_000, 10, &none, 10).unwrap();
        assert!(early.deliveries.is_empty());
        assert!(early.next_due.is_some_and(|t| t > now - 5_000 && t <= now));
        // A claim that stops at its limit leaves the rest due at once.
        let partial = store.claim_due(now, 60_000, 1, &none, 10).unwrap();
        assert_eq!(partial.deliveries.len(), 1);
        assert!(partial.next_due.is_some_and(|t| t <= now));
        // All that is due claimed, with room left: next is when a lease taken above runs out.
        let rest = store.claim_due(now, 60_000, 10, &none, 10).unwrap();
        assert_eq!(rest.deliveries.len(), 2);
        assert_eq!(rest.next_due, Some(now + 60_000));
        // A lease that ran out (the worker died) makes the delivery due again.
        let later = store
            .claim_due(now + 60_001, 60_000, 10, &none, 10)
            .unwrap();
        assert_eq!(later.deliveries.len(), 5);
        assert_eq!(later.next_due, None, "all five claimed, nothing else waits");
    }

    /// A worker's claim of up to 10 deliveries, leased for a minute, against `capacity`.
    fn claim_against(store: &Store, now: i64, capacity: &Capacity) -> ClaimOutcome {
        claim_up_to(store, now, 10, capacity)
    }

    /// A worker's claim of up to `limit` deliveries, leased for a minute, against `capacity`.
    fn claim_up_to(store: &Store, now: i64, limit: usize, capacity: &Capacity) -> ClaimOutcome {
        let claim = Claim {
            now,
            lease_ms: 60_000,
            limit,
            capacity,
        };
        store
            .record_and_claim(&[], &[], &FailurePolicy::default(), &claim)
            .unwrap()
            .0
    }

    #[test]
    fn fresh_deliveries_are_leased_to_the_worker_while_it_has_room() {
        let (_dir, store, hook) = setup();
        let capacity = Capacity::new(2, 10);
        let lease = DirectLease {
            capacity: &capacity,
            lease_ms: 60_000,
        };
        let events: Vec<NewEvent> = (0..3).map(|_| event("NewOpportunity")).collect();
        // Closed (no worker runs): everything waits for a claim.
        let stored = store
            .commit_consumed_changes(0, 0, &events[..1], &[], Some(&lease))
            .unwrap();
        assert_eq!((stored.deliveries, stored.leased.len()), (1, 0));
        capacity.open();
        let before = now_ms();
        let stored = store
            .commit_consumed_changes(0, 0, &events[1..], &[], Some(&lease))
            .unwrap();
        assert_eq!((stored.deliveries, stored.leased.len()), (2, 2));
        assert_eq!(capacity.held(Some(&hook)), 2);
        let leased = &stored.leased[0];
        assert_eq!(
            (leased.attempt, leased.event_id.as_str()),
            (1, events[1].id.as_str())
        );
        assert_eq!(leased.payload, events[1].payload);
        assert_eq!(leased.secret, "whsec_c2VjcmV0", "opened for signing");
        assert!(leased.leased_until >= before + 60_000);
        assert_eq!(
            store.delivery_status(&leased.message_id).unwrap(),
            Some(DeliveryStatus::Delivering)
        );
        // The hook is full: a claim takes nothing, and says a freed slot has the first one to take.
        let claimed = claim_against(&store, now_ms(), &capacity);
        assert!(claimed.deliveries.is_empty());
        assert!(claimed.due_without_room);
        capacity.give_back(&hook);
        let claimed = claim_against(&store, now_ms(), &capacity);
        assert_eq!(claimed.deliveries.len(), 1);
        assert_eq!(claimed.deliveries[0].event_id, events[0].id);
        assert_eq!(capacity.held(None), 2);
    }

    #[test]
    fn room_taken_by_a_transaction_that_fails_is_given_back() {
        let (_dir, store, hook) = setup();
        let capacity = Capacity::new(8, 8);
        capacity.open();
        let lease = DirectLease {
            capacity: &capacity,
            lease_ms: 60_000,
        };
        // The position moved meanwhile (another consumer): nothing is stored, nothing held.
        let failed =
            store.commit_consumed_changes(5, 6, &[event("NewOpportunity")], &[], Some(&lease));
        assert!(matches!(failed, Err(StoreError::ConcurrentConsumer)));
        assert_eq!(capacity.held(Some(&hook)), 0);
        // A batch whose second event was stored already fails after the first event's delivery
        // took its room: that room comes back.
        let twice = event("NewOpportunity");
        store
            .commit_consumed_changes(0, 0, std::slice::from_ref(&twice), &[], Some(&lease))
            .unwrap();
        assert_eq!(capacity.held(None), 1);
        let failed = store.commit_consumed_changes(
            0,
            0,
            &[event("NewOpportunity"), twice],
            &[],
            Some(&lease),
        );
        assert!(failed.is_err());
        assert_eq!(capacity.held(None), 1, "only the committed lease is held");
    }

    #[test]
    fn deleting_the_hook_discards_what_waits() {
        let (_dir, store, hook) = setup();
        store.insert_events(&[event("NewOpportunity")]).unwrap();
        assert!(store.delete_hook(&hook).unwrap());
        let outcome = store
            .claim_due(now_ms(), 1000, 10, &HashMap::new(), 8)
            .unwrap();
        assert!(outcome.deliveries.is_empty());
        assert_eq!(outcome.next_due, None);
    }

    #[test]
    fn enabled_hooks_among_leaves_out_disabled_and_deleted_ones() {
        let (_dir, store, hook) = setup();
        let ids = [hook.clone(), "hook_gone".to_owned()];
        let enabled = store.enabled_hooks_among(&ids).unwrap();
        assert!(enabled.contains(&hook) && enabled.len() == 1, "{enabled:?}");
        store
            .update_hook(
                &hook,
                &crate::store::HookPatch {
                    enabled: Some(false),
                    ..Default::default()
                },
            )
            .unwrap();
        assert!(store.enabled_hooks_among(&ids).unwrap().is_empty());
    }

    #[test]
    fn released_claims_are_due_again_as_if_never_claimed() {
        let (_dir, store, _hook) = setup();
        store.insert_events(&[event("NewOpportunity")]).unwrap();
        let now = now_ms();
        let none = HashMap::new();
        let claimed = store
            .claim_due(now, 60_000, 10, &none, 8)
            .unwrap()
            .deliveries;
        assert_eq!(claimed.len(), 1);
        assert_eq!(
            store.delivery_status(&claimed[0].message_id).unwrap(),
            Some(DeliveryStatus::Delivering)
        );
        // Not once its lease is over: by then it may be someone else's.
        let stale = ClaimedDelivery {
            leased_until: claimed[0].leased_until - 1,
            ..claimed[0].clone()
        };
        store.release_claims(&[&stale], now).unwrap();
        assert_eq!(
            store.delivery_status(&claimed[0].message_id).unwrap(),
            Some(DeliveryStatus::Delivering)
        );
        store.release_claims(&[&claimed[0]], now).unwrap();
        assert_eq!(
            store.delivery_status(&claimed[0].message_id).unwrap(),
            Some(DeliveryStatus::Pending)
        );
        let again = store
            .claim_due(now, 60_000, 10, &none, 8)
            .unwrap()
            .deliveries;
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].seq, claimed[0].seq);
        assert_eq!(again[0].attempt, 1, "a released claim costs no attempt");
    }

    /// Every statement the writer has prepared, with how often SQLite prepared it again.
    fn reprepares(store: &Store) -> Vec<(String, i32)> {
        let conn = store.writer();
        let mut counts = Vec::new();
        // SAFETY: the writer's lock is held, so no statement is finalised while we walk the list;
        // sqlite3_next_stmt, sqlite3_sql and sqlite3_stmt_status only read.
        unsafe {
            let db = conn.handle();
            let mut stmt = rusqlite::ffi::sqlite3_next_stmt(db, std::ptr::null_mut());
            while !stmt.is_null() {
                let sql = std::ffi::CStr::from_ptr(rusqlite::ffi::sqlite3_sql(stmt));
                let n = rusqlite::ffi::sqlite3_stmt_status(
                    stmt,
                    rusqlite::ffi::SQLITE_STMTSTATUS_REPREPARE,
                    0,
                );
                counts.push((sql.to_string_lossy().into_owned(), n));
                stmt = rusqlite::ffi::sqlite3_next_stmt(db, stmt);
            }
        }
        counts
    }

    /// SQLite prepares a statement again after a schema change. A bound `LIMIT` in the claim used
    /// to make that permanent: every later claim prepared its statement once more.
    #[test]
    fn claims_and_records_keep_their_prepared_statements() {
        let (dir, store, _hook) = setup();
        let mut now = now_ms();
        let cycle = |now: i64| {
            store.insert_events(&[event("NewOpportunity")]).unwrap();
            let capacity = Capacity::new(8, 100);
            capacity.open();
            let claimed = claim_against(&store, now, &capacity);
            let records: Vec<AttemptRecord> = claimed
                .deliveries
                .iter()
                .map(|c| AttemptRecord::delivered(c, now))
                .collect();
            store
                .record_attempts(&records, &FailurePolicy::default())
                .unwrap();
        };
        cycle(now);
        // The application changes its schema: every cached statement is prepared once more.
        rusqlite::Connection::open(dir.path().join("t.db"))
            .unwrap()
            .execute_batch("CREATE TABLE Unrelated (id INTEGER PRIMARY KEY)")
            .unwrap();
        for _ in 0..20 {
            now += 7;
            cycle(now);
        }
        let again: Vec<_> = reprepares(&store)
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .collect();
        assert!(again.is_empty(), "prepared again and again: {again:#?}");
    }

    /// A hook of everything for `trigger`, besides `setup`'s.
    fn another_hook(store: &Store, path: &str, trigger: &str) -> String {
        store
            .create_hook(NewHook {
                target_url: format!("http://127.0.0.1:9/{path}"),
                secret: "whsec_c2VjcmV0".into(),
                authorization: None,
                description: String::new(),
                origin: HookOrigin::Subscription,
                scope: Scope::Everything,
                enabled: true,
                events: vec![trigger.into()],
                made_by: None,
            })
            .unwrap()
            .id
    }

    /// Three hooks of `NewOpportunity` (in id order) and `events` events stored in one batch, so
    /// that every delivery has the same time: oldest-first would give the first hook every turn
    /// while it has any left; taking turns does not.
    fn three_hooks_with_events(events: usize) -> (tempfile::TempDir, Store, [String; 3]) {
        let (dir, store, first) = setup();
        let mut hooks = [
            first,
            another_hook(&store, "b", "NewOpportunity"),
            another_hook(&store, "c", "NewOpportunity"),
        ];
        hooks.sort();
        let batch: Vec<NewEvent> = (0..events).map(|_| event("NewOpportunity")).collect();
        store.insert_events(&batch).unwrap();
        (dir, store, hooks)
    }

    #[test]
    fn hooks_take_turns_and_a_full_claim_stops_walking() {
        let (_dir, store, hooks) = three_hooks_with_events(4);
        let capacity = Capacity::new(2, 100);
        capacity.open();
        let claim_of_two = |now: i64| {
            let outcome = claim_up_to(&store, now, 2, &capacity);
            let taken: Vec<&str> = outcome
                .deliveries
                .iter()
                .map(|d| d.hook_id.as_str())
                .collect();
            let hook = taken[0].to_owned();
            assert!(taken.iter().all(|h| *h == hook), "{taken:?}");
            for _ in 0..taken.len() {
                capacity.give_back(&hook);
            }
            (hook, taken.len(), outcome.next_due)
        };
        let now = now_ms();
        // Each claim fills from one hook and says to look again at once, since others wait.
        for (turn, expected) in [&hooks[0], &hooks[1], &hooks[2], &hooks[0]]
            .iter()
            .enumerate()
        {
            let (hook, taken, next_due) = claim_of_two(now);
            assert_eq!((&hook, taken), (*expected, 2), "turn {turn}");
            assert_eq!(next_due, Some(now), "turn {turn}");
        }
        // Going round from the middle still reaches the hooks before it: hooks[1] and [2] have
        // two each left, and hooks[0] none due.
        let (hook, taken, _) = claim_of_two(now);
        assert_eq!((hook.as_str(), taken), (hooks[1].as_str(), 2));
        let (hook, taken, _) = claim_of_two(now);
        assert_eq!((hook.as_str(), taken), (hooks[2].as_str(), 2));
        let last = claim_up_to(&store, now, 2, &capacity);
        assert!(last.deliveries.is_empty());
        assert_eq!(
            last.next_due,
            Some(now + 60_000),
            "when the first lease runs out"
        );
        // The worker's room in all runs out on the first hook: the claim stops there too.
        let small = Capacity::new(2, 1);
        small.open();
        store.insert_events(&[event("NewOpportunity")]).unwrap();
        let now = now_ms();
        let outcome = claim_against(&store, now, &small);
        assert_eq!(outcome.deliveries.len(), 1);
        assert_eq!(outcome.deliveries[0].hook_id, hooks[0]);
        assert_eq!(
            outcome.next_due,
            Some(now),
            "the other hooks wait for a slot"
        );
    }

    #[test]
    fn a_claim_gives_every_waiting_hook_a_turn_before_taking_more_of_any() {
        let (_dir, store, hooks) = three_hooks_with_events(10);
        let now = now_ms();
        let hooks_of = |outcome: &ClaimOutcome| -> Vec<String> {
            outcome
                .deliveries
                .iter()
                .map(|d| d.hook_id.clone())
                .collect()
        };
        let twice_each: Vec<String> = hooks.iter().flat_map(|h| [h.clone(), h.clone()]).collect();
        // Room for six: a turn of two for each hook, of the same two (oldest) events, and the
        // claim says to look again at once for the rest.
        let capacity = Capacity::new(4, 100).taking_turns_of(2);
        capacity.open();
        let outcome = claim_up_to(&store, now, 6, &capacity);
        assert_eq!(hooks_of(&outcome), twice_each);
        let events: Vec<&str> = outcome
            .deliveries
            .iter()
            .map(|d| d.event_id.as_str())
            .collect();
        assert!(
            events.chunks(2).all(|pair| pair == &events[..2]),
            "the same two events for every hook: {events:?}"
        );
        assert_eq!(outcome.next_due, Some(now));
        // Room to spare once every hook had its turn: a second round gives each the rest of its
        // room (four each), in turn.
        let roomier = Capacity::new(4, 100).taking_turns_of(2);
        roomier.open();
        let outcome = claim_up_to(&store, now, 100, &roomier);
        let expected: Vec<String> = twice_each.iter().chain(&twice_each).cloned().collect();
        assert_eq!(hooks_of(&outcome), expected);
        assert_eq!(outcome.next_due, None, "every hook is full");
        assert!(outcome.due_without_room);
        assert_eq!(roomier.held(None), 12);
        // A hook's own room, set apart from the others', bounds its share.
        let uneven = Capacity::new(4, 100).taking_turns_of(2);
        uneven.open();
        uneven.set_room(&hooks[1], 1);
        assert_eq!(uneven.room(&hooks[1]), 1);
        uneven.reset_room(&hooks[2]);
        assert_eq!(uneven.room(&hooks[2]), 4, "the default");
        let outcome = claim_up_to(&store, now, 100, &uneven);
        let taken_by = |hook: &str| {
            outcome
                .deliveries
                .iter()
                .filter(|d| d.hook_id == hook)
                .count()
        };
        assert_eq!(
            (
                taken_by(&hooks[0]),
                taken_by(&hooks[1]),
                taken_by(&hooks[2])
            ),
            (4, 1, 4)
        );
    }

    #[test]
    fn a_saturated_hooks_backlog_does_not_hide_another_hooks_delivery() {
        let (_dir, store, busy) = setup();
        for _ in 0..50 {
            store.insert_events(&[event("NewOpportunity")]).unwrap();
        }
        let other = another_hook(&store, "other", "DealWon");
        store.insert_events(&[event("DealWon")]).unwrap();
        let in_flight = HashMap::from([(busy.clone(), 8)]);
        let claimed = store
            .claim_due(now_ms(), 60_000, 10, &in_flight, 8)
            .unwrap();
        assert_eq!(claimed.deliveries.len(), 1);
        assert_eq!(claimed.deliveries[0].hook_id, other);
        assert_eq!(claimed.next_due, None, "the busy hook has no room");
        // With room again, the busy hook's oldest come first, up to its room.
        let claimed = store
            .claim_due(now_ms(), 60_000, 100, &HashMap::new(), 8)
            .unwrap()
            .deliveries;
        assert_eq!(claimed.len(), 8);
        assert!(claimed.iter().all(|c| c.hook_id == busy));
    }
}
