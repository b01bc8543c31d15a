//! The outbox: events, one delivery per event per hook, and one attempt row per try.
//!
//! An event's payload is stored once, on the event; deliveries point at it. A delivery is due when
//! `next_attempt_at <= now`; claiming it sets that column to the end of a lease, so a delivery whose
//! worker died becomes due again by itself (at least once, never lost).
//!
//! `fan_out` stores events and a delivery per receiving hook, `claims` leases due deliveries to the
//! worker, `records` stores what their attempts did (and what that does to a hook's standing).
//! This file holds the types they share and the outbox's reads.

mod claims;
mod fan_out;
mod records;
#[cfg(test)]
mod tests;

use rusqlite::OptionalExtension;

use std::collections::HashMap;

use super::{Judgement, Outbox, Result, Secrets, Sqlite};
use crate::delivery::{Capacity, Taken};
use claims::{claim_in, hand_back_in};
use records::record_in;

pub use claims::{Claim, ClaimOutcome};
pub(super) use fan_out::fan_out;
pub use fan_out::Stored;
pub(super) use records::next_status;

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
    /// What hooks' filters made of it, by hook id: only the hooks whose filter did not let it
    /// through (a hook with no filter, or whose filter passed it, is not listed).
    pub judgements: Vec<(String, Judgement)>,
}

impl NewEvent {
    /// What the filter of hook `hook_id` made of this event, when it did not let it through.
    pub fn judgement_of(&self, hook_id: &str) -> Option<&Judgement> {
        self.judgements
            .iter()
            .find(|(id, _)| id == hook_id)
            .map(|(_, judgement)| judgement)
    }
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
    /// Changes logged and not yet consumed, and when the oldest was written: how far behind the
    /// change log's consumer is.
    pub changes_waiting: u64,
    pub oldest_change_at: Option<i64>,
    /// How many events each hook's filter kept from it, for the hooks whose filter kept any.
    pub filtered_out: Vec<(String, u64)>,
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

/// As the log says it: `retry at 2026-12-04T10:00:05.000Z` rather than raw milliseconds.
impl std::fmt::Display for NextStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NextStep::Delivered => f.write_str("delivered"),
            NextStep::RetryAt(at) => write!(f, "retry at {}", crate::clock::rfc3339_ms(*at)),
            NextStep::Failed => f.write_str("failed: no attempt left"),
            NextStep::HookGone => f.write_str("failed: the target answered 410 Gone"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub delivery_seq: i64,
    /// The end of the lease the attempt was made under: its record moves the delivery on only if
    /// that lease still stands (a worker that outlived its lease, whose delivery was claimed
    /// again, records its attempt but no longer decides what happens next).
    pub leased_until: i64,
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
            leased_until: claim.leased_until,
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

/// What a delivery is signed and authorized with: sealed as the hook's row keeps it, or opened. The
/// previous secret is there only while its grace period lasts.
#[derive(Clone)]
pub(in crate::store) struct HookSecrets {
    pub(in crate::store) secret: String,
    pub(in crate::store) authorization: Option<String>,
    pub(in crate::store) previous_secret: Option<String>,
}

impl HookSecrets {
    /// The columns a query selects from `herald_hooks h` for a hook's secrets, in `from_row`'s
    /// order: the previous secret only while its grace period lasts at the parameter `now` (`?2`).
    fn columns(now: &str) -> String {
        format!(
            "h.secret, h.authorization, \
             CASE WHEN h.previous_secret_until > {now} THEN h.previous_secret END"
        )
    }

    /// The sealed secrets in columns `first..first + 3` of a row that selected `columns`.
    fn from_row(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<HookSecrets> {
        Ok(HookSecrets {
            secret: row.get(first)?,
            authorization: row.get(first + 1)?,
            previous_secret: row.get(first + 2)?,
        })
    }

    /// The opened copy of sealed secrets.
    pub(in crate::store) fn open(&self, secrets: &Secrets) -> Result<HookSecrets> {
        let open = |sealed: &Option<String>| sealed.as_deref().map(|s| secrets.open(s)).transpose();
        Ok(HookSecrets {
            secret: secrets.open(&self.secret)?,
            authorization: open(&self.authorization)?,
            previous_secret: open(&self.previous_secret)?,
        })
    }
}

/// What the fan-out and a claim know of a delivery they lease to the worker.
pub(in crate::store) struct Leased<'a> {
    pub(in crate::store) seq: i64,
    pub(in crate::store) message_id: String,
    pub(in crate::store) attempts_made: u32,
    pub(in crate::store) hook_id: &'a str,
    pub(in crate::store) target_url: &'a str,
    pub(in crate::store) secrets: &'a HookSecrets,
    pub(in crate::store) event_id: String,
    pub(in crate::store) trigger: String,
    pub(in crate::store) payload: String,
    pub(in crate::store) leased_until: i64,
}

impl From<Leased<'_>> for ClaimedDelivery {
    fn from(leased: Leased<'_>) -> ClaimedDelivery {
        ClaimedDelivery {
            seq: leased.seq,
            message_id: leased.message_id,
            attempt: leased.attempts_made + 1,
            hook_id: leased.hook_id.to_owned(),
            target_url: leased.target_url.to_owned(),
            secret: leased.secrets.secret.clone(),
            previous_secret: leased.secrets.previous_secret.clone(),
            authorization: leased.secrets.authorization.clone(),
            event_id: leased.event_id,
            trigger: leased.trigger,
            payload: leased.payload,
            leased_until: leased.leased_until,
        }
    }
}

impl Outbox for Sqlite {
    /// Stores events fired outside the change log (by hand, by the API) and fans them out.
    fn insert_events(&self, events: &[NewEvent]) -> Result<usize> {
        let stored = self.write(|tx| fan_out(tx, self.secrets(), events, None))?;
        Ok(stored.deliveries)
    }

    fn insert_test_event(&self, hook_id: &str, event: &NewEvent) -> Result<Option<String>> {
        self.write(|tx| {
            let exists = tx
                .prepare_cached("SELECT 1 FROM herald_hooks WHERE id = ?1")?
                .exists([hook_id])?;
            if !exists {
                return Ok(None);
            }
            let now = crate::clock::now_ms();
            tx.execute(
                "INSERT INTO herald_events (id, trigger_name, row_id, payload, change_id, script_hash,
                                            resource_name, event_type, company_id, project_id,
                                            created_at, test)
                 VALUES (?1, ?2, ?3, ?4, NULL, ?5, ?6, ?7, ?8, ?9, ?10, 1)",
                (
                    &event.id,
                    &event.trigger,
                    event.row_id,
                    &event.payload,
                    &event.script_hash,
                    &event.resource_name,
                    &event.event_type,
                    event.company_id,
                    event.project_id,
                    now,
                ),
            )?;
            let event_seq = tx.last_insert_rowid();
            let message_id = crate::ids::message_id();
            tx.execute(
                "INSERT INTO herald_deliveries (id, event_seq, hook_id, status, attempts,
                                                next_attempt_at, created_at, updated_at)
                 VALUES (?1, ?2, ?3, 'pending', 0, ?4, ?4, ?4)",
                (&message_id, event_seq, hook_id, now),
            )?;
            Ok(Some(message_id))
        })
    }

    /// Claims up to `limit` due deliveries, leasing each until `now + lease_ms`, for a worker that
    /// holds `in_flight` and at most `per_hook_limit` per hook: `record_and_claim` without records,
    /// for tests and tools.
    fn claim_due(
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
    /// `handed_back` are deliveries the worker held but will not send (see `hand_back`): handed
    /// back first, so the claim may take them again.
    fn record_and_claim(
        &self,
        records: &[AttemptRecord],
        handed_back: &[ClaimedDelivery],
        policy: &FailurePolicy,
        claim: &Claim<'_>,
    ) -> Result<(ClaimOutcome, Vec<HookHealthChange>)> {
        let mut taken = Taken::new(claim.capacity);
        let (claimed, health) = self.write_noting("recording attempts", |tx| {
            let health = record_in(tx, records, policy)?;
            hand_back_in(tx, handed_back.iter(), claim.now)?;
            let claimed = claim_in(tx, self.secrets(), claim, &mut taken)?;
            Ok((claimed, health))
        })?;
        taken.keep();
        Ok((claimed, health))
    }

    /// Hands claimed deliveries that were never sent back to the outbox, due at `now`: what a
    /// stopping worker held ready beyond its attempts in flight, or the ready deliveries of a hook
    /// that was disabled. Their attempt counts are untouched, so they go out as if never claimed.
    /// A claim whose lease ran out (and which someone may have claimed again since) is left alone.
    fn hand_back(&self, claims: &[&ClaimedDelivery], now: i64) -> Result<()> {
        if claims.is_empty() {
            return Ok(());
        }
        self.write_noting("handing deliveries back", |tx| {
            hand_back_in(tx, claims.iter().copied(), now)
        })
    }

    /// Records finished attempts and moves their deliveries on, in one transaction.
    fn record_attempts(
        &self,
        records: &[AttemptRecord],
        policy: &FailurePolicy,
    ) -> Result<Vec<HookHealthChange>> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        self.write_noting("recording attempts", |tx| record_in(tx, records, policy))
    }

    /// What `/metrics` reports about the outbox and the hooks.
    fn outbox_snapshot(&self) -> Result<OutboxSnapshot> {
        let conn = self.reader();
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
        // The log keeps its newest row after consumption (ids must not start again): waiting is
        // what lies past the consumer's position.
        let (changes_waiting, oldest_change_at): (i64, Option<i64>) = conn.query_row(
            "SELECT count(*), min(changed_at) FROM herald_changes
             WHERE id > (SELECT value FROM herald_state WHERE key = 'tracking.position')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let filtered_out = conn
            .prepare_cached(
                "SELECT id, filtered_out FROM herald_hooks WHERE filtered_out > 0 ORDER BY id",
            )?
            .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(OutboxSnapshot {
            waiting: waiting as u64,
            oldest_waiting_created_at: oldest,
            hooks_enabled: enabled as u64,
            hooks_disabled: disabled as u64,
            hooks_failing: failing as u64,
            changes_waiting: changes_waiting as u64,
            oldest_change_at,
            filtered_out,
        })
    }

    /// The status of one delivery, by its message id.
    fn delivery_status(&self, message_id: &str) -> Result<Option<DeliveryStatus>> {
        let conn = self.reader();
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
    fn attempts_of(&self, message_id: &str) -> Result<Vec<StoredAttempt>> {
        let conn = self.reader();
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
}
