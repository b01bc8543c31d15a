//! The fan-out: an event is stored once, with one delivery for each enabled hook that selects it,
//! whose scope it is in and whose filter let it through; deliveries the worker has room for are
//! leased to it on the way. A filter that failed on the event leaves that hook's delivery failed,
//! with the error, until it is judged again.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use rusqlite::Transaction;

use super::{ClaimedDelivery, DeliveryStatus, HookSecrets, Judgement, Leased, NewEvent};
use crate::clock::now_ms;
use crate::delivery::Taken;
use crate::store::{Result, Secrets};

/// What storing events did.
#[derive(Debug, Default)]
pub struct Stored {
    /// Deliveries created, leased or not.
    pub deliveries: usize,
    /// The deliveries leased straight to the worker, for it to send.
    pub leased: Vec<ClaimedDelivery>,
}

/// An enabled hook that receives an event, as the fan-out finds it; its secrets are opened only
/// once a delivery of it is leased, and then once per batch.
struct ReceivingHook {
    id: String,
    target_url: String,
    sealed: HookSecrets,
    opened: Option<HookSecrets>,
}

impl ReceivingHook {
    /// The hook's id, URL and opened secrets, for a delivery of it that was leased.
    fn opened(&mut self, secrets: &Secrets) -> Result<(&str, &str, &HookSecrets)> {
        if self.opened.is_none() {
            self.opened = Some(self.sealed.open(secrets)?);
        }
        let opened = self.opened.as_ref().expect("opened above");
        Ok((&self.id, &self.target_url, opened))
    }
}

/// An event's trigger and scope: which hooks receive it depends on nothing else.
type Audience<'a> = (&'a str, Option<i64>, Option<i64>);

/// Stores events and fans each out to the enabled hooks that select it and whose scope it is in. An
/// event no hook receives is not stored: there is nobody to deliver it to and no history to show it
/// in. With `lease`, the deliveries the worker has room for are stored leased and returned, the rest
/// wait for a claim.
pub(in crate::store) fn fan_out(
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
        "INSERT INTO herald_deliveries (id, event_seq, hook_id, status, attempts, next_attempt_at,
                                        created_at, updated_at, filter_error)
         VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6, ?6, ?7)",
    )?;
    // A hook without a scope takes everything; a project-level hook its project's events; a
    // company-level hook its company's.
    let mut receivers = tx.prepare_cached(&format!(
        "SELECT h.id, h.target_url, {}
         FROM herald_hook_events e JOIN herald_hooks h ON h.id = e.hook_id
         WHERE e.event_name = ?1 AND h.enabled = 1
           AND ((h.company_id IS NULL AND h.project_id IS NULL)
                OR (h.project_id IS NOT NULL AND h.project_id = ?3)
                OR (h.project_id IS NULL AND h.company_id = ?2))
         ORDER BY h.id",
        HookSecrets::columns("?4")
    ))?;
    // A batch's events mostly share a few triggers and scopes: look each combination up once.
    let mut receiving: HashMap<Audience<'_>, Vec<ReceivingHook>> = HashMap::new();
    let mut filtered_out: HashMap<String, i64> = HashMap::new();
    for event in events {
        let key = (event.trigger.as_str(), event.company_id, event.project_id);
        let hooks = match receiving.entry(key) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(new) => new.insert(
                receivers
                    .query_map(
                        (&event.trigger, event.company_id, event.project_id, now),
                        |r| {
                            Ok(ReceivingHook {
                                id: r.get(0)?,
                                target_url: r.get(1)?,
                                sealed: HookSecrets::from_row(r, 2)?,
                                opened: None,
                            })
                        },
                    )?
                    .collect::<rusqlite::Result<Vec<ReceivingHook>>>()?,
            ),
        };
        let rejected = |hook: &ReceivingHook| {
            matches!(event.judgement_of(&hook.id), Some(Judgement::Rejected))
        };
        for hook in hooks.iter().filter(|hook| rejected(hook)) {
            *filtered_out.entry(hook.id.clone()).or_default() += 1;
        }
        if hooks.iter().all(rejected) {
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
            match event.judgement_of(&hook.id) {
                Some(Judgement::Rejected) => continue,
                Some(Judgement::Failed(error)) => {
                    // Held, neither sent nor dropped, until the filter judges it again.
                    insert_delivery.execute((
                        &message_id,
                        event_seq,
                        &hook.id,
                        DeliveryStatus::Failed.as_str(),
                        None::<i64>,
                        now,
                        error,
                    ))?;
                    continue;
                }
                Some(Judgement::Passed) | None => {}
            }
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
                None::<&str>,
            ))?;
            stored.deliveries += 1;
            if leased.is_some() {
                let seq = tx.last_insert_rowid();
                let (hook_id, target_url, opened) = hook.opened(secrets)?;
                stored.leased.push(
                    Leased {
                        seq,
                        message_id,
                        attempts_made: 0,
                        hook_id,
                        target_url,
                        secrets: opened,
                        event_id: event.id.clone(),
                        trigger: event.trigger.clone(),
                        payload: event.payload.clone(),
                        leased_until: next_attempt_at,
                    }
                    .into(),
                );
            }
        }
    }
    let mut count_filtered_out = tx
        .prepare_cached("UPDATE herald_hooks SET filtered_out = filtered_out + ?2 WHERE id = ?1")?;
    for (hook_id, count) in &filtered_out {
        count_filtered_out.execute((hook_id, count))?;
    }
    Ok(stored)
}
