//! The outbox on PostgreSQL: the fan-out of events to hooks, the records of attempts (fenced by
//! the lease they were made under), hand-backs and the outbox's reads. Claims are in `claims.rs`.
//!
//! Times come from the database's clock (`DB_NOW_MS`): several herald processes lease and record
//! against one clock.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use super::connection::{Queries, Tx};

use super::claims::claim_in;
use super::{storable, storable_opt, Postgres, Result, DB_NOW_MS};
use crate::delivery::{Capacity, Taken};
use crate::store::outbox::{next_status, HookSecrets, Leased};
use crate::store::{
    AttemptOutcome, AttemptRecord, Claim, ClaimOutcome, ClaimedDelivery, DeliveryStatus,
    FailurePolicy, HookHealthChange, Judgement, NewEvent, NextStep, Outbox, OutboxSnapshot,
    ScriptFailure, Stored, StoredAttempt,
};

/// The database's clock now, in Unix milliseconds.
pub(super) fn db_now(tx: &mut Tx<'_>) -> Result<i64> {
    Ok(tx.query_one(&format!("SELECT {DB_NOW_MS}"), &[])?.get(0))
}

/// The columns of a hook's secrets, as `HookSecrets::from_pg` reads them from `first` on: the
/// previous secret only while its grace period lasts at parameter `now`.
pub(super) fn secret_columns(now: &str) -> String {
    format!(
        "h.secret, h.\"authorization\", \
         CASE WHEN h.previous_secret_until > {now} THEN h.previous_secret END"
    )
}

pub(super) fn sealed_secrets(row: &postgres::Row, first: usize) -> HookSecrets {
    HookSecrets {
        secret: row.get(first),
        authorization: row.get(first + 1),
        previous_secret: row.get(first + 2),
    }
}

/// An enabled hook an event goes to; its secrets are opened once one of its deliveries is leased.
struct ReceivingHook {
    id: String,
    target_url: String,
    sealed: HookSecrets,
    opened: Option<HookSecrets>,
}

/// Who an event goes to: hooks selecting its trigger, in its company's or project's scope.
type Audience<'e> = (&'e str, Option<i64>, Option<i64>);

fn audience(event: &NewEvent) -> Audience<'_> {
    (event.trigger.as_str(), event.company_id, event.project_id)
}

/// Stores events with one delivery per enabled hook that selects each and whose scope it is in
/// (an event nobody receives is not stored), as on SQLite. With `lease`, the deliveries the worker
/// has room for are stored leased to this process and returned. Two statements store a whole
/// batch: one for the events, one for the deliveries. `now` is the database's clock, read by the
/// caller in a statement of its own transaction.
pub(super) fn fan_out(
    store: &Postgres,
    tx: &mut Tx<'_>,
    now: i64,
    events: &[NewEvent],
    mut lease: Option<(&mut Taken<'_>, i64)>,
) -> Result<Stored> {
    let mut stored = Stored::default();
    if events.is_empty() {
        return Ok(stored);
    }
    // Every audience's hooks in one statement: a batch whose events belong to a hundred
    // projects would otherwise cost a hundred round trips.
    let mut audiences: Vec<Audience<'_>> = Vec::new();
    let mut receiving: HashMap<Audience<'_>, Vec<ReceivingHook>> = HashMap::new();
    for event in events {
        let key = audience(event);
        if let Entry::Vacant(new) = receiving.entry(key) {
            new.insert(Vec::new());
            audiences.push(key);
        }
    }
    let receivers = format!(
        "SELECT a.n, h.id, h.target_url, {}
         FROM unnest($1::text[], $2::int8[], $3::int8[]) WITH ORDINALITY
              AS a(trigger_name, company_id, project_id, n)
         JOIN herald_hook_events e ON e.event_name = a.trigger_name
         JOIN herald_hooks h ON h.id = e.hook_id
         WHERE h.enabled
           AND ((h.company_id IS NULL AND h.project_id IS NULL)
                OR (h.project_id IS NOT NULL AND h.project_id = a.project_id)
                OR (h.project_id IS NULL AND h.company_id = a.company_id))
         ORDER BY a.n, h.id",
        secret_columns("$4")
    );
    let audience_triggers: Vec<&str> = audiences.iter().map(|a| a.0).collect();
    let audience_companies: Vec<Option<i64>> = audiences.iter().map(|a| a.1).collect();
    let audience_projects: Vec<Option<i64>> = audiences.iter().map(|a| a.2).collect();
    for row in tx.query(
        &receivers,
        &[
            &audience_triggers,
            &audience_companies,
            &audience_projects,
            &now,
        ],
    )? {
        let n: i64 = row.get(0);
        let audience = audiences[(n - 1) as usize];
        receiving
            .get_mut(&audience)
            .expect("every audience has its entry")
            .push(ReceivingHook {
                id: row.get(1),
                target_url: row.get(2),
                sealed: sealed_secrets(&row, 3),
                opened: None,
            });
    }
    let mut kept: Vec<&NewEvent> = Vec::new();
    let mut filtered_out: HashMap<String, i64> = HashMap::new();
    for event in events {
        let key = audience(event);
        let mut receives = false;
        for hook in &receiving[&key] {
            match event.judgement_of(&hook.id) {
                Some(Judgement::Rejected) => {
                    *filtered_out.entry(hook.id.clone()).or_default() += 1;
                }
                _ => receives = true,
            }
        }
        if receives {
            kept.push(event);
        }
    }
    for (hook_id, count) in &filtered_out {
        tx.execute(
            "UPDATE herald_hooks SET filtered_out = filtered_out + $2 WHERE id = $1",
            &[hook_id, count],
        )?;
    }
    if kept.is_empty() {
        return Ok(stored);
    }
    let column = |f: fn(&NewEvent) -> Option<String>| kept.iter().map(|e| f(e)).collect::<Vec<_>>();
    let ids: Vec<&str> = kept.iter().map(|e| e.id.as_str()).collect();
    let triggers: Vec<&str> = kept.iter().map(|e| e.trigger.as_str()).collect();
    let row_ids: Vec<Option<i64>> = kept.iter().map(|e| e.row_id).collect();
    let payloads: Vec<String> = kept
        .iter()
        .map(|e| storable(&e.payload).into_owned())
        .collect();
    let change_ids: Vec<Option<i64>> = kept.iter().map(|e| e.change_id).collect();
    let hashes = column(|e| e.script_hash.clone());
    let resources = column(|e| e.resource_name.clone());
    let types = column(|e| e.event_type.clone());
    let companies: Vec<Option<i64>> = kept.iter().map(|e| e.company_id).collect();
    let projects: Vec<Option<i64>> = kept.iter().map(|e| e.project_id).collect();
    let event_seqs: HashMap<String, i64> = tx
        .query(
            "INSERT INTO herald_events (id, trigger_name, row_id, payload, change_id, script_hash,
                                        resource_name, event_type, company_id, project_id, created_at)
             SELECT e.*, $11 FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[], $5::int8[],
                                         $6::text[], $7::text[], $8::text[], $9::int8[], $10::int8[]) AS e
             RETURNING id, seq",
            &[
                &ids, &triggers, &row_ids, &payloads, &change_ids, &hashes, &resources, &types,
                &companies, &projects, &now,
            ],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();

    // Fresh deliveries are leased to this process only for hooks no other process holds (see
    // `claims`): their rows locked first, so that a claim of another process cannot take the same
    // hook meanwhile.
    let mut leasable: HashSet<String> = HashSet::new();
    if lease.is_some() {
        let mut hooks: Vec<String> = receiving.values().flatten().map(|h| h.id.clone()).collect();
        hooks.sort();
        hooks.dedup();
        tx.query(
            "SELECT id FROM herald_hooks WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE",
            &[&hooks],
        )?;
        let elsewhere = super::claims::held_by_others(tx, &hooks, store.node(), now)?;
        leasable = hooks
            .into_iter()
            .filter(|h| !elsewhere.contains(h))
            .collect();
    }
    struct Planned<'e> {
        message_id: String,
        event: &'e NewEvent,
        hook: (Audience<'e>, usize),
        leased: bool,
        /// The filter's error, for a delivery held because its filter failed on the event.
        held: Option<&'e str>,
    }
    let mut planned = Vec::new();
    for &event in &kept {
        let key = audience(event);
        for (index, hook) in receiving[&key].iter().enumerate() {
            let held = match event.judgement_of(&hook.id) {
                Some(Judgement::Rejected) => continue,
                Some(Judgement::Failed(error)) => Some(error.as_str()),
                Some(Judgement::Passed) | None => None,
            };
            let leased = match lease.as_mut() {
                Some((taken, _)) if held.is_none() && leasable.contains(&hook.id) => {
                    taken.take(&hook.id)
                }
                _ => false,
            };
            planned.push(Planned {
                message_id: crate::ids::message_id(),
                event,
                hook: (key, index),
                leased,
                held,
            });
        }
    }
    let lease_ms = lease.as_ref().map_or(0, |(_, ms)| *ms);
    let message_ids: Vec<&str> = planned.iter().map(|p| p.message_id.as_str()).collect();
    let seqs: Vec<i64> = planned.iter().map(|p| event_seqs[&p.event.id]).collect();
    let hooks: Vec<&str> = planned
        .iter()
        .map(|p| receiving[&p.hook.0][p.hook.1].id.as_str())
        .collect();
    let statuses: Vec<&str> = planned
        .iter()
        .map(|p| {
            if p.held.is_some() {
                DeliveryStatus::Failed.as_str()
            } else if p.leased {
                DeliveryStatus::Delivering.as_str()
            } else {
                DeliveryStatus::Pending.as_str()
            }
        })
        .collect();
    let due: Vec<Option<i64>> = planned
        .iter()
        .map(|p| match (p.held, p.leased) {
            (Some(_), _) => None,
            (None, true) => Some(now + lease_ms),
            (None, false) => Some(now),
        })
        .collect();
    let filter_errors: Vec<Option<&str>> = planned.iter().map(|p| p.held).collect();
    let holders: Vec<Option<&str>> = planned
        .iter()
        .map(|p| p.leased.then_some(store.node()))
        .collect();
    let delivery_seqs: HashMap<String, i64> = tx
        .query(
            "INSERT INTO herald_deliveries (id, event_seq, hook_id, status, attempts, next_attempt_at,
                                            leased_by, created_at, updated_at, filter_error)
             SELECT d.id, d.event_seq, d.hook_id, d.status, 0, d.due, d.holder, $7, $7, d.filter_error
             FROM unnest($1::text[], $2::int8[], $3::text[], $4::text[], $5::int8[], $6::text[],
                         $8::text[])
                  AS d(id, event_seq, hook_id, status, due, holder, filter_error)
             RETURNING id, seq",
            &[
                &message_ids,
                &seqs,
                &hooks,
                &statuses,
                &due,
                &holders,
                &now,
                &filter_errors,
            ],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    stored.deliveries = planned.iter().filter(|p| p.held.is_none()).count();
    if planned.iter().any(|p| !p.leased && p.held.is_none()) {
        super::signals::deliveries_waiting(tx, store.schema())?;
    }
    for p in planned.into_iter().filter(|p| p.leased) {
        let hook = &mut receiving.get_mut(&p.hook.0).expect("planned from it")[p.hook.1];
        if hook.opened.is_none() {
            hook.opened = Some(hook.sealed.open(store.secrets())?);
        }
        let opened = hook.opened.as_ref().expect("opened above");
        stored.leased.push(
            Leased {
                seq: delivery_seqs[&p.message_id],
                message_id: p.message_id,
                attempts_made: 0,
                hook_id: &hook.id,
                target_url: &hook.target_url,
                secrets: opened,
                event_id: p.event.id.clone(),
                trigger: p.event.trigger.clone(),
                payload: p.event.payload.clone(),
                leased_until: now + lease_ms,
            }
            .into(),
        );
    }
    Ok(stored)
}

pub(super) fn insert_failures(tx: &mut Tx<'_>, failures: &[ScriptFailure]) -> Result<()> {
    if failures.is_empty() {
        return Ok(());
    }
    let insert = format!(
        "INSERT INTO herald_script_failures
         (script, line, col, message, trigger_name, table_name, row_id, change_id, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, {DB_NOW_MS})"
    );
    for f in failures {
        let line = f.line.map(|n| n as i32);
        let col = f.col.map(|n| n as i32);
        tx.execute(
            &insert,
            &[
                &storable(&f.script),
                &line,
                &col,
                &storable(&f.message),
                &f.trigger,
                &f.table,
                &f.row_id,
                &f.change_id,
            ],
        )?;
    }
    Ok(())
}

/// Stores attempts and moves their deliveries on, each only under the lease it was made with;
/// then what the attempts did to their hooks' standing. A whole trip's records take a few
/// statements, not a few per record: one moves the deliveries, one stores the attempts, one ends
/// the runs of failure that successes ended, and one per hook whose attempts failed. Hooks are
/// taken in id order, so that two processes recording at once lock them in the same order.
pub(super) fn record_in(
    tx: &mut Tx<'_>,
    records: &[AttemptRecord],
    policy: &FailurePolicy,
    now: i64,
) -> Result<Vec<HookHealthChange>> {
    let mut changes = Vec::new();
    if records.is_empty() {
        return Ok(changes);
    }
    let seqs: Vec<i64> = records.iter().map(|r| r.delivery_seq).collect();
    let statuses: Vec<&str> = records
        .iter()
        .map(|r| next_status(r.next).0.as_str())
        .collect();
    let attempts: Vec<i32> = records.iter().map(|r| r.attempt as i32).collect();
    let due: Vec<Option<i64>> = records.iter().map(|r| next_status(r.next).1).collect();
    let leases: Vec<i64> = records.iter().map(|r| r.leased_until).collect();
    let moved: HashSet<i64> = tx
        .query(
            "UPDATE herald_deliveries AS d
             SET status = r.status, attempts = r.attempt, next_attempt_at = r.due,
                 leased_by = NULL, updated_at = $6
             FROM unnest($1::int8[], $2::text[], $3::int4[], $4::int8[], $5::int8[])
                  AS r(seq, status, attempt, due, lease)
             WHERE d.seq = r.seq AND d.status = 'delivering' AND d.next_attempt_at = r.lease
             RETURNING d.seq",
            &[&seqs, &statuses, &attempts, &due, &leases, &now],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let unmoved: Vec<i64> = seqs
        .iter()
        .copied()
        .filter(|s| !moved.contains(s))
        .collect();
    let existing: HashSet<i64> = if unmoved.is_empty() {
        HashSet::new()
    } else {
        tx.query(
            "SELECT seq FROM herald_deliveries WHERE seq = ANY($1)",
            &[&unmoved],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect()
    };
    let mut kept: Vec<&AttemptRecord> = Vec::with_capacity(records.len());
    for r in records {
        if moved.contains(&r.delivery_seq) {
            kept.push(r);
        } else if existing.contains(&r.delivery_seq) {
            tracing::warn!(
                delivery_seq = r.delivery_seq,
                hook_id = %r.hook_id,
                "an attempt was recorded after its lease ended; the delivery's newer state stands"
            );
            kept.push(r);
        } else {
            // Its event went (a server that lost its last commits in a crash without
            // `synchronous_commit`, a database restored from before it): nothing to record it
            // against, and nothing that would ever take the record.
            tracing::warn!(
                delivery_seq = r.delivery_seq,
                hook_id = %r.hook_id,
                "an attempt's delivery no longer exists; the attempt is not recorded"
            );
        }
    }
    if kept.is_empty() {
        return Ok(changes);
    }
    let column = |f: &dyn Fn(&AttemptRecord) -> Option<String>| -> Vec<Option<String>> {
        kept.iter().map(|r| f(r)).collect()
    };
    let texts = |f: &dyn Fn(&AttemptRecord) -> String| -> Vec<String> {
        kept.iter().map(|r| f(r)).collect()
    };
    tx.execute(
        "INSERT INTO herald_attempts
         (delivery_seq, attempt, started_at, duration_ms, outcome, status_code,
          request_headers, response_headers, response_body, error, url)
         SELECT * FROM unnest($1::int8[], $2::int4[], $3::int8[], $4::int8[], $5::text[],
                              $6::int4[], $7::text[], $8::text[], $9::text[], $10::text[],
                              $11::text[])",
        &[
            &kept.iter().map(|r| r.delivery_seq).collect::<Vec<i64>>(),
            &kept.iter().map(|r| r.attempt as i32).collect::<Vec<i32>>(),
            &kept.iter().map(|r| r.started_at).collect::<Vec<i64>>(),
            &kept.iter().map(|r| r.duration_ms).collect::<Vec<i64>>(),
            &kept
                .iter()
                .map(|r| r.outcome.as_str())
                .collect::<Vec<&str>>(),
            &kept
                .iter()
                .map(|r| r.status_code.map(i32::from))
                .collect::<Vec<Option<i32>>>(),
            &texts(&|r| storable(&r.request_headers).into_owned()),
            &column(&|r| storable_opt(&r.response_headers).map(|t| t.into_owned())),
            &column(&|r| storable_opt(&r.response_body).map(|t| t.into_owned())),
            &column(&|r| storable_opt(&r.error).map(|t| t.into_owned())),
            &texts(&|r| storable(&r.url).into_owned()),
        ],
    )?;

    // A hook's standing: a success ends its run of failures, and the failures after its last
    // success start or extend one (in the order the records came).
    let mut by_hook: std::collections::BTreeMap<&str, Vec<&AttemptRecord>> = Default::default();
    for r in &kept {
        by_hook.entry(r.hook_id.as_str()).or_default().push(r);
    }
    let succeeded: Vec<&str> = by_hook
        .iter()
        .filter(|(_, rs)| rs.iter().any(|r| r.outcome == AttemptOutcome::Success))
        .map(|(hook, _)| *hook)
        .collect();
    if !succeeded.is_empty() {
        tx.execute(
            "UPDATE herald_hooks SET failing_since = NULL, failures = 0, failure_warned = false
             WHERE id = ANY($1) AND failing_since IS NOT NULL",
            &[&succeeded],
        )?;
    }
    for rs in by_hook.values() {
        let after_success: Vec<&AttemptRecord> = rs
            .iter()
            .rev()
            .take_while(|r| r.outcome != AttemptOutcome::Success)
            .copied()
            .collect();
        if let Some(first) = after_success.last() {
            if let Some(change) =
                extend_failure_run(tx, first, after_success.len() as i64, policy, now)?
            {
                changes.push(change);
            }
        }
    }
    for r in kept.iter().filter(|r| r.next == NextStep::HookGone) {
        let origin: Option<String> = tx
            .query_opt(
                "SELECT origin FROM herald_hooks WHERE id = $1",
                &[&r.hook_id],
            )?
            .map(|row| row.get(0));
        match origin.as_deref() {
            Some("subscription") => {
                tx.execute(
                    "INSERT INTO herald_gone_subscriptions (id, made_by, gone_at)
                     SELECT id, made_by, $2 FROM herald_hooks WHERE id = $1
                     ON CONFLICT (id) DO NOTHING",
                    &[&r.hook_id, &now],
                )?;
                super::hooks::delete_hook_in(tx, &r.hook_id, now)?;
                tracing::warn!(hook_id = %r.hook_id, "target answered 410 Gone: subscription removed");
            }
            Some(_) => {
                tx.execute(
                    "UPDATE herald_hooks SET enabled = false, disabled_reason = $2 WHERE id = $1",
                    &[&r.hook_id, &"the target answered 410 Gone"],
                )?;
                tracing::warn!(hook_id = %r.hook_id, "target answered 410 Gone: hook disabled");
            }
            None => {}
        }
    }
    Ok(changes)
}

/// `failed` failures, the first of them `record`, start or extend a hook's run of failures; a
/// run that spans the policy's window disables the hook, with a warning at half the window (as on
/// SQLite).
fn extend_failure_run(
    tx: &mut Tx<'_>,
    record: &AttemptRecord,
    failed: i64,
    policy: &FailurePolicy,
    now: i64,
) -> Result<Option<HookHealthChange>> {
    let run = tx.query_opt(
        "UPDATE herald_hooks SET failing_since = coalesce(failing_since, $2), failures = failures + $3
         WHERE id = $1
         RETURNING failing_since, failures, failure_warned, enabled",
        &[&record.hook_id, &record.started_at, &failed],
    )?;
    let Some(run) = run else {
        return Ok(None);
    };
    let (failing_since, failures, warned, enabled): (i64, i64, bool, bool) =
        (run.get(0), run.get(1), run.get(2), run.get(3));
    let Some(window) = policy.disable_after_ms.filter(|_| enabled) else {
        return Ok(None);
    };
    let failing_for = now - failing_since;
    if failing_for >= window && failures >= FailurePolicy::MIN_FAILURES {
        let reason = format!(
            "every attempt failed since {} ({failures} attempts)",
            crate::clock::rfc3339_ms(failing_since)
        );
        tx.execute(
            "UPDATE herald_hooks SET enabled = false, disabled_reason = $2, updated_at = $3 WHERE id = $1",
            &[&record.hook_id, &reason, &now],
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
            "UPDATE herald_hooks SET failure_warned = true WHERE id = $1",
            &[&record.hook_id],
        )?;
        return Ok(Some(HookHealthChange::Warned {
            hook_id: record.hook_id.clone(),
            failing_since,
            failures,
        }));
    }
    Ok(None)
}

/// Claimed deliveries that were never sent go back, due at `now`, as if never claimed; one whose
/// lease is no longer the one claimed is left alone.
pub(super) fn hand_back_in<'c>(
    tx: &mut Tx<'_>,
    claims: impl Iterator<Item = &'c ClaimedDelivery>,
    now: i64,
) -> Result<()> {
    let (seqs, leases): (Vec<i64>, Vec<i64>) = claims.map(|c| (c.seq, c.leased_until)).unzip();
    if seqs.is_empty() {
        return Ok(());
    }
    tx.execute(
        "UPDATE herald_deliveries AS d
         SET status = CASE WHEN d.attempts = 0 THEN 'pending' ELSE 'retrying' END,
             next_attempt_at = $3, leased_by = NULL, updated_at = $3
         FROM unnest($1::int8[], $2::int8[]) AS c(seq, lease)
         WHERE d.seq = c.seq AND d.status = 'delivering' AND d.next_attempt_at = c.lease",
        &[&seqs, &leases, &now],
    )?;
    Ok(())
}

impl Outbox for Postgres {
    fn insert_events(&self, events: &[NewEvent]) -> Result<usize> {
        let stored = self.write(|tx| {
            let now = db_now(tx)?;
            fan_out(self, tx, now, events, None)
        })?;
        Ok(stored.deliveries)
    }

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

    /// Records, hands back and claims in one transaction, as on SQLite; the lease is measured on
    /// the database's clock.
    fn record_and_claim(
        &self,
        records: &[AttemptRecord],
        handed_back: &[ClaimedDelivery],
        policy: &FailurePolicy,
        claim: &Claim<'_>,
    ) -> Result<(ClaimOutcome, Vec<HookHealthChange>)> {
        let mut taken = Taken::new(claim.capacity);
        let result = self.write_noting("recording attempts", |tx| {
            let now = db_now(tx)?;
            let health = record_in(tx, records, policy, now)?;
            hand_back_in(tx, handed_back.iter(), now)?;
            let mut claimed = claim_in(self, tx, claim, now, &mut taken)?;
            // The worker reckons on its own clock.
            if let Some(due) = claimed.next_due.as_mut() {
                *due += claim.now - now;
            }
            Ok((claimed, health))
        })?;
        taken.keep();
        Ok(result)
    }

    fn insert_test_event(&self, hook_id: &str, event: &NewEvent) -> Result<Option<String>> {
        self.write(|tx| {
            if tx
                .query_opt("SELECT 1 FROM herald_hooks WHERE id = $1", &[&hook_id])?
                .is_none()
            {
                return Ok(None);
            }
            let now = db_now(tx)?;
            let event_seq: i64 = tx
                .query_one(
                    "INSERT INTO herald_events (id, trigger_name, row_id, payload, change_id,
                                                script_hash, resource_name, event_type, company_id,
                                                project_id, created_at, test)
                     VALUES ($1, $2, $3, $4, NULL, $5, $6, $7, $8, $9, $10, true)
                     RETURNING seq",
                    &[
                        &event.id,
                        &event.trigger,
                        &event.row_id,
                        &storable(&event.payload),
                        &event.script_hash,
                        &event.resource_name,
                        &event.event_type,
                        &event.company_id,
                        &event.project_id,
                        &now,
                    ],
                )?
                .get(0);
            let message_id = crate::ids::message_id();
            tx.execute(
                "INSERT INTO herald_deliveries (id, event_seq, hook_id, status, attempts,
                                                next_attempt_at, created_at, updated_at)
                 VALUES ($1, $2, $3, 'pending', 0, $4, $4, $4)",
                &[&message_id, &event_seq, &hook_id, &now],
            )?;
            super::signals::deliveries_waiting(tx, self.schema())?;
            Ok(Some(message_id))
        })
    }

    fn hand_back(&self, claims: &[&ClaimedDelivery], _now: i64) -> Result<()> {
        if claims.is_empty() {
            return Ok(());
        }
        self.write_noting("handing deliveries back", |tx| {
            let now = db_now(tx)?;
            hand_back_in(tx, claims.iter().copied(), now)?;
            super::signals::deliveries_waiting(tx, self.schema())
        })
    }

    fn record_attempts(
        &self,
        records: &[AttemptRecord],
        policy: &FailurePolicy,
    ) -> Result<Vec<HookHealthChange>> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        self.write_noting("recording attempts", |tx| {
            let now = db_now(tx)?;
            record_in(tx, records, policy, now)
        })
    }

    fn outbox_snapshot(&self) -> Result<OutboxSnapshot> {
        let mut client = self.client()?;
        // One snapshot for all the gauges, so that they agree with each other (a delivery
        // counted waiting is counted in its hook's standing too).
        let mut client = client.transaction()?;
        client.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")?;
        let waiting = client.query_one(
            "SELECT count(*), min(created_at) FROM herald_deliveries WHERE next_attempt_at IS NOT NULL",
            &[],
        )?;
        let hooks = client.query_one(
            "SELECT count(*) FILTER (WHERE enabled), count(*) FILTER (WHERE NOT enabled) FROM herald_hooks",
            &[],
        )?;
        let failing = client.query_one(
            "SELECT count(DISTINCT d.hook_id) FROM herald_deliveries d
             JOIN herald_hooks h ON h.id = d.hook_id
             WHERE d.next_attempt_at IS NOT NULL AND d.status = 'retrying' AND h.enabled",
            &[],
        )?;
        // Consumption deletes what it read: whatever is in the log waits.
        let changes =
            client.query_one("SELECT count(*), min(changed_at) FROM herald_changes", &[])?;
        let filtered_out = client
            .query(
                "SELECT id, filtered_out FROM herald_hooks WHERE filtered_out > 0 ORDER BY id",
                &[],
            )?
            .iter()
            .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
            .collect();
        client.commit()?;
        Ok(OutboxSnapshot {
            waiting: waiting.get::<_, i64>(0) as u64,
            oldest_waiting_created_at: waiting.get(1),
            hooks_enabled: hooks.get::<_, i64>(0) as u64,
            hooks_disabled: hooks.get::<_, i64>(1) as u64,
            hooks_failing: failing.get::<_, i64>(0) as u64,
            changes_waiting: changes.get::<_, i64>(0) as u64,
            oldest_change_at: changes.get(1),
            filtered_out,
        })
    }

    fn delivery_status(&self, message_id: &str) -> Result<Option<DeliveryStatus>> {
        let status: Option<String> = self
            .client()?
            .query_opt(
                "SELECT status FROM herald_deliveries WHERE id = $1",
                &[&message_id],
            )?
            .map(|r| r.get(0));
        Ok(status.as_deref().and_then(DeliveryStatus::parse))
    }

    fn attempts_of(&self, message_id: &str) -> Result<Vec<StoredAttempt>> {
        let rows = self.client()?.query(
            "SELECT a.attempt, a.started_at, a.duration_ms, a.outcome, a.status_code,
                    a.request_headers, a.response_headers, a.response_body, a.error
             FROM herald_attempts a JOIN herald_deliveries d ON d.seq = a.delivery_seq
             WHERE d.id = $1 ORDER BY a.seq",
            &[&message_id],
        )?;
        Ok(rows
            .iter()
            .map(|r| StoredAttempt {
                attempt: r.get::<_, i32>(0) as u32,
                started_at: r.get(1),
                duration_ms: r.get(2),
                outcome: r.get(3),
                status_code: r.get::<_, Option<i32>>(4).map(|c| c as u16),
                request_headers: r.get(5),
                response_headers: r.get(6),
                response_body: r.get(7),
                error: r.get(8),
            })
            .collect())
    }
}
