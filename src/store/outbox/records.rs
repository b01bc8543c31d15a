//! Records: what an attempt did, stored with its delivery's next step, and what a run of failed
//! attempts does to its hook (warned, then disabled; a 410 removes a subscription).

use std::collections::HashSet;

use rusqlite::{OptionalExtension, Transaction};

use super::{
    AttemptOutcome, AttemptRecord, DeliveryStatus, FailurePolicy, HookHealthChange, NextStep,
};
use crate::clock::now_ms;
use crate::store::hooks::{delete_hook_in, discard_waiting};
use crate::store::Result;

pub(super) fn record_in(
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
        // Fenced by the lease the attempt was made under (see `AttemptRecord::leased_until`).
        let mut update = tx.prepare_cached(
            "UPDATE herald_deliveries SET status = ?2, attempts = ?3, next_attempt_at = ?4, updated_at = ?5
             WHERE seq = ?1 AND status = 'delivering' AND next_attempt_at = ?6",
        )?;
        // Hooks whose run of failures a success in these records already ended: their later
        // successes have nothing to reset (a trip records many attempts to a busy hook).
        let mut clean: HashSet<&str> = HashSet::new();
        let mut exists = tx.prepare_cached("SELECT 1 FROM herald_deliveries WHERE seq = ?1")?;
        for r in records {
            let (status, next_at) = next_status(r.next);
            let moved = update.execute((
                r.delivery_seq,
                status.as_str(),
                r.attempt,
                next_at,
                now,
                r.leased_until,
            ))?;
            if moved == 0 {
                if !exists.exists([r.delivery_seq])? {
                    // Its event went (a database restored from before it, say): nothing to
                    // record it against, and nothing that would ever take the record.
                    tracing::warn!(
                        delivery_seq = r.delivery_seq,
                        hook_id = %r.hook_id,
                        "an attempt's delivery no longer exists; the attempt is not recorded"
                    );
                    continue;
                }
                tracing::warn!(
                    delivery_seq = r.delivery_seq,
                    hook_id = %r.hook_id,
                    "an attempt was recorded after its lease ended; the delivery's newer state stands"
                );
            }
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
                tx.execute(
                    "INSERT INTO herald_gone_subscriptions (id, made_by, gone_at)
                     SELECT id, made_by, ?2 FROM herald_hooks WHERE id = ?1
                     ON CONFLICT (id) DO NOTHING",
                    (&r.hook_id, now),
                )?;
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

/// Where a delivery stands after an attempt, and when it is due next.
pub(in crate::store) fn next_status(next: NextStep) -> (DeliveryStatus, Option<i64>) {
    match next {
        NextStep::Delivered => (DeliveryStatus::Delivered, None),
        NextStep::RetryAt(at) => (DeliveryStatus::Retrying, Some(at)),
        NextStep::Failed | NextStep::HookGone => (DeliveryStatus::Failed, None),
    }
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
        discard_waiting(tx, &record.hook_id, now)?;
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
