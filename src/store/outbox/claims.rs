//! Claims: due deliveries leased to the worker, hook by hook, against the room it has.

use rusqlite::{OptionalExtension, Transaction};

use super::{ClaimedDelivery, HookSecrets, Leased};
use crate::delivery::{Capacity, Taken};
use crate::store::{Result, Secrets};

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
#[derive(Clone, Copy)]
pub struct Claim<'a> {
    pub now: i64,
    pub lease_ms: i64,
    pub limit: usize,
    pub capacity: &'a Capacity,
}

pub(super) fn claim_in(
    tx: &Transaction<'_>,
    secrets: &Secrets,
    claim: &Claim<'_>,
    taken: &mut Taken<'_>,
) -> Result<ClaimOutcome> {
    let Claim {
        now,
        lease_ms,
        limit,
        capacity,
    } = *claim;
    if limit == 0 {
        return Ok(ClaimOutcome::default());
    }
    // Hooks with room whose deliveries are not due yet: their oldest is when to look again.
    let mut next_due: Option<i64> = None;
    let mut due_without_room = false;
    let mut claimed = Vec::with_capacity(limit);
    let mut hook_stmt = tx.prepare_cached(&format!(
        "SELECT h.target_url, {} FROM herald_hooks h WHERE h.id = ?1 AND h.enabled = 1",
        HookSecrets::columns("?2")
    ))?;
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
            capacity.turn()
        };
        if claimed.len() == limit || capacity.free() == 0 {
            // Full, and another hook waits: look again at once, or once a slot frees.
            next_due = Some(now);
            break;
        }
        let free = capacity.free_for(&hook_id);
        if free == 0 {
            match capacity.rate_limited_for(&hook_id) {
                // Its rate limit, not a slot, is what it waits for: look again when it allows.
                Some(wait) => {
                    let at = oldest.max(now + wait);
                    next_due = Some(next_due.map_or(at, |t| t.min(at)));
                }
                None => due_without_room |= oldest <= now,
            }
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
                Ok((r.get(0)?, HookSecrets::from_row(r, 1)?))
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
            claimed.push(
                Leased {
                    seq,
                    message_id,
                    attempts_made: attempts,
                    hook_id: &hook_id,
                    target_url: &target_url,
                    secrets: &opened,
                    event_id,
                    trigger,
                    payload,
                    leased_until: now + lease_ms,
                }
                .into(),
            );
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

pub(super) fn hand_back_in<'c>(
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
