//! Claims on PostgreSQL: due deliveries leased to this process, hook by hook, against the room its
//! worker has, with `FOR UPDATE SKIP LOCKED`, so that several herald processes claiming at once
//! never take the same delivery (one skips the rows the other is leasing) and never wait for
//! each other.
//!
//! A claim is three statements: which hooks have deliveries waiting (an index seek per hook: a
//! loose scan of `(hook_id, next_attempt_at)`, in the turns' order, each hook's due deliveries
//! counted up to a turn and one (as one for a hook without room), stopping once they come to
//! about twice what the claim has room for), then, once it is decided here how
//! many of each hook to take (the same turns as on SQLite: one round of each waiting hook before
//! any gets more), one statement that leases them all and returns what sending them takes, and
//! one for the hooks' URLs and secrets.

use super::connection::{Queries, Tx};

use super::outbox::{sealed_secrets, secret_columns};
use super::{Postgres, Result};
use crate::delivery::Taken;
use crate::store::outbox::{HookSecrets, Leased};
use crate::store::{Claim, ClaimOutcome};

/// A hook with deliveries waiting, when the earliest of them is due (a lease's end counts), and
/// how many are due now, counted up to a turn and one.
struct Waiting {
    hook_id: String,
    oldest: i64,
    enabled: bool,
    due: usize,
}

pub(super) fn claim_in(
    store: &Postgres,
    tx: &mut Tx<'_>,
    claim: &Claim<'_>,
    now: i64,
    taken: &mut Taken<'_>,
) -> Result<ClaimOutcome> {
    let Claim {
        lease_ms,
        limit,
        capacity,
        ..
    } = *claim;
    let mut outcome = ClaimOutcome::default();
    if limit == 0 {
        return Ok(outcome);
    }
    let last = capacity.last_claimed_hook();
    let turn = capacity.turn();
    // The scan stops once the hooks it saw have twice as many deliveries due as the claim has
    // room for (at least 32), each hook's counted up to a turn and one, and a hook without room
    // as one whatever it has due (as many of those as before, when hooks were counted: one per
    // delivery wanted; but a drain of 1,000,000 waiting over 1,000 hooks then read 286 hooks a
    // claim to take from 12).
    let without_room = capacity.hooks_without_room();
    let (waiting, cut_short_at) = waiting_hooks(
        tx,
        &last,
        now,
        Counting {
            due_wanted: (2 * limit).max(32) as i64,
            cap: turn as i64 + 1,
            without_room: &without_room,
        },
    )?;
    // What waits for a hook that is gone or disabled is discarded on the way.
    let gone: Vec<&str> = waiting
        .iter()
        .filter(|w| !w.enabled && w.oldest <= now)
        .map(|w| w.hook_id.as_str())
        .collect();
    if !gone.is_empty() {
        tx.execute(
            "UPDATE herald_deliveries SET status = 'discarded', next_attempt_at = NULL,
                    leased_by = NULL, updated_at = $2
             WHERE hook_id = ANY($1) AND next_attempt_at IS NOT NULL AND next_attempt_at <= $2",
            &[&gone, &now],
        )?;
    }
    // A hook's deliveries are held by one process at a time, so that its
    // `max_in_flight_per_hook` holds for all herald processes together: this claim takes from the
    // hooks it can lock (a claim of another process has the others now) and no other process
    // holds leases of. The lock also keeps the consumer's hand-over (see `fan_out`) from leasing
    // the same hook meanwhile.
    let due: Vec<&str> = waiting
        .iter()
        .filter(|w| w.enabled && w.oldest <= now)
        .map(|w| w.hook_id.as_str())
        .collect();
    let claimable: std::collections::HashSet<String> = if due.is_empty() {
        Default::default()
    } else {
        let locked: Vec<String> = tx
            .query(
                "SELECT id FROM herald_hooks WHERE id = ANY($1) ORDER BY id
                 FOR NO KEY UPDATE SKIP LOCKED",
                &[&due],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let held_elsewhere = held_by_others(tx, &locked, store.node(), now)?;
        locked
            .into_iter()
            .filter(|hook| !held_elsewhere.contains(hook))
            .collect()
    };
    // The walk starts after the hook the last claim took from (see the SQLite claim's turns).
    let start = waiting.iter().position(|w| w.hook_id > last).unwrap_or(0);
    let order = waiting[start..].iter().chain(&waiting[..start]);
    let mut wanted: Vec<(&str, i64)> = Vec::new();
    let mut reserved = 0usize;
    let mut cut_short: Vec<&str> = Vec::new();
    let mut uncounted: Vec<&str> = Vec::new();
    for w in order.filter(|w| w.enabled) {
        if reserved == limit || capacity.free() == 0 {
            outcome.next_due = Some(now);
            break;
        }
        let free = capacity.free_for(&w.hook_id);
        if free == 0 {
            match capacity.rate_limited_for(&w.hook_id) {
                // Its rate limit, not a slot, is what it waits for: look again when it allows.
                Some(wait) => {
                    let at = w.oldest.max(now + wait);
                    outcome.next_due = Some(outcome.next_due.map_or(at, |t| t.min(at)));
                }
                None => outcome.due_without_room |= w.oldest <= now,
            }
            continue;
        }
        if w.oldest > now {
            outcome.next_due = Some(outcome.next_due.map_or(w.oldest, |t| t.min(w.oldest)));
            continue;
        }
        if !claimable.contains(&w.hook_id) {
            // Another process holds it: it delivers them; look again within the second.
            continue;
        }
        let room = free.min(limit - reserved);
        if without_room.binary_search(&w.hook_id).is_ok() {
            // The scan counted it as one, having no room for it then; an attempt has ended
            // since. It gets a turn, no more: what it has due is not known.
            let n = reserve(taken, &w.hook_id, room.min(turn));
            if n > 0 {
                wanted.push((&w.hook_id, n as i64));
                uncounted.push(&w.hook_id);
                reserved += n;
            }
            continue;
        }
        // What the hook can give, so that a hook with one delivery due does not take a turn's
        // worth of the claim's room from the hooks after it.
        let n = reserve(taken, &w.hook_id, room.min(turn).min(w.due));
        if room > turn && w.due > turn {
            cut_short.push(&w.hook_id);
        }
        if n > 0 {
            wanted.push((&w.hook_id, n as i64));
            reserved += n;
        }
    }
    // Every waiting hook had its turn; the room left goes to those cut short. A hook has more
    // than a turn due, but how many more is not known: the first may take it all and have fewer.
    let mut left_out = false;
    for hook in cut_short {
        if reserved == limit {
            left_out = capacity.free_for(hook) > 0;
            break;
        }
        let n = reserve(taken, hook, capacity.free_for(hook).min(limit - reserved));
        if n > 0 {
            match wanted.iter_mut().find(|(h, _)| *h == hook) {
                Some((_, count)) => *count += n as i64,
                None => wanted.push((hook, n as i64)),
            }
            reserved += n;
        }
    }
    if let Some(end) = cut_short_at {
        if !wanted.is_empty() {
            // Hooks past the ones looked at may be due too: look again as soon as there is room.
            outcome.next_due = Some(now);
        } else if capacity.free() > 0 {
            // None of the hooks looked at could give anything (no room, a rate limit, another
            // process holds them): the turns move past them, so that the next claim looks further
            // on. Not at once: while nothing can be taken that would only spin. It comes when an
            // attempt ends, a rate limit allows, or within the worker's idle second.
            capacity.claimed_from(&end);
        }
    }
    if wanted.is_empty() {
        return Ok(outcome);
    }
    let hooks: Vec<&str> = wanted.iter().map(|(h, _)| *h).collect();
    let counts: Vec<i64> = wanted.iter().map(|(_, n)| *n).collect();
    let leased_until = now + lease_ms;
    let rows = tx.query(
        "WITH wanted AS (SELECT * FROM unnest($1::text[], $2::int8[]) AS w(hook_id, n)),
         picked AS (
             SELECT q.seq FROM wanted w CROSS JOIN LATERAL (
                 SELECT d.seq FROM herald_deliveries d
                 WHERE d.hook_id = w.hook_id AND d.next_attempt_at IS NOT NULL
                   AND d.next_attempt_at <= $3
                 ORDER BY d.next_attempt_at, d.seq LIMIT w.n
                 FOR UPDATE SKIP LOCKED) q
         )
         UPDATE herald_deliveries AS d
         SET status = 'delivering', next_attempt_at = $4, leased_by = $5, updated_at = $3
         FROM picked p, herald_events e
         WHERE d.seq = p.seq AND e.seq = d.event_seq
         RETURNING d.seq, d.id, d.attempts, d.hook_id, e.id, e.trigger_name, e.payload,
                   d.next_attempt_at",
        &[&hooks, &counts, &now, &leased_until, &store.node()],
    )?;
    // Room reserved for rows another process leased first, or that a hook did not have, goes
    // back.
    let mut more_due = rows.len() == limit || left_out;
    for (hook, n) in &wanted {
        let got = rows.iter().filter(|r| r.get::<_, &str>(3) == *hook).count() as i64;
        for _ in got..*n {
            taken.give_back(hook);
        }
        if got > 0 {
            capacity.claimed_from(hook);
        }
        more_due |= got == *n && uncounted.contains(hook);
    }
    if more_due {
        // A full claim, a hook cut short that got nothing of what was left, or one not counted
        // that gave all it was asked: more may be due. Look again as soon as there is room, as
        // SQLite does when the row after its last is due.
        outcome.next_due = Some(now);
    }
    if rows.is_empty() {
        return Ok(outcome);
    }
    let claimed_hooks: Vec<String> = {
        let mut ids: Vec<String> = rows.iter().map(|r| r.get(3)).collect();
        ids.sort();
        ids.dedup();
        ids
    };
    let targets: Vec<(String, String, HookSecrets)> = tx
        .query(
            &format!(
                "SELECT h.id, h.target_url, {} FROM herald_hooks h WHERE h.id = ANY($1)",
                secret_columns("$2")
            ),
            &[&claimed_hooks, &now],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1), sealed_secrets(r, 2)))
        .collect();
    let mut opened = Vec::with_capacity(targets.len());
    for (id, url, sealed) in targets {
        opened.push((id, url, sealed.open(store.secrets())?));
    }
    // In the order they were due, as the worker expects: deliveries due in the same millisecond
    // (a backfill's step) in the order they were stored, which the pick above keeps too (the
    // index alone would break ties by where the rows happen to lie in the table).
    let mut rows = rows;
    rows.sort_by_key(|r| r.get::<_, i64>(0));
    for r in &rows {
        let hook_id: &str = r.get(3);
        let Some((id, url, secrets)) = opened.iter().find(|(id, _, _)| id == hook_id) else {
            continue;
        };
        outcome.deliveries.push(
            Leased {
                seq: r.get(0),
                message_id: r.get(1),
                attempts_made: r.get::<_, i32>(2) as u32,
                hook_id: id,
                target_url: url,
                secrets,
                event_id: r.get(4),
                trigger: r.get(5),
                payload: r.get(6),
                leased_until: r.get(7),
            }
            .into(),
        );
    }
    Ok(outcome)
}

/// How the waiting hooks' scan counts what it has seen, and when it has seen enough.
#[derive(Clone, Copy)]
struct Counting<'a> {
    /// Stop once the hooks seen have this many deliveries due...
    due_wanted: i64,
    /// ...each hook's counted up to this many...
    cap: i64,
    /// ...and these hooks' as one at most.
    without_room: &'a [String],
}

/// The hooks with deliveries waiting, in id order, as the claim's turns go: from the first after
/// `after` round to `after`, stopping once they have enough deliveries due (see `Counting`). A
/// claim takes from a few hooks; looking at every hook each time (an index seek each) was most of
/// the server's time draining a backlog spread over 1,000 hooks. When it stopped short of a full
/// round, also the last hook it looked at, in the turns' order.
fn waiting_hooks(
    tx: &mut Tx<'_>,
    after: &str,
    now: i64,
    counting: Counting<'_>,
) -> Result<(Vec<Waiting>, Option<String>)> {
    let due_wanted = counting.due_wanted;
    let (mut waiting, mut due_seen) = waiting_between(tx, after, None, now, counting)?;
    if due_seen < due_wanted && !after.is_empty() {
        let rest = Counting {
            due_wanted: due_wanted - due_seen,
            ..counting
        };
        let (more, more_due) = waiting_between(tx, "", Some(after), now, rest)?;
        waiting.extend(more);
        due_seen += more_due;
    }
    let cut_short_at = (due_seen >= due_wanted)
        .then(|| waiting.last().map(|w| w.hook_id.clone()))
        .flatten();
    waiting.sort_by(|a, b| a.hook_id.cmp(&b.hook_id));
    Ok((waiting, cut_short_at))
}

/// The hooks with deliveries waiting whose ids are past `from` (and at most `through`), in id
/// order, each with its deliveries due counted as `counting` says, stopping at the one that makes
/// `counting.due_wanted` of those; and how many it counted.
fn waiting_between(
    tx: &mut Tx<'_>,
    from: &str,
    through: Option<&str>,
    now: i64,
    counting: Counting<'_>,
) -> Result<(Vec<Waiting>, i64)> {
    // A hook's count is read only when it is due and has room: one more short index range.
    let rows = tx.query(
        "WITH RECURSIVE waiting AS (
             (SELECT first.hook_id, first.next_attempt_at, due.n AS due, due.n AS seen
              FROM (SELECT hook_id, next_attempt_at FROM herald_deliveries
                    WHERE next_attempt_at IS NOT NULL AND hook_id > $1
                      AND ($4::text IS NULL OR hook_id <= $4)
                    ORDER BY hook_id, next_attempt_at LIMIT 1) first
              CROSS JOIN LATERAL (SELECT CASE
                  WHEN first.next_attempt_at > $2 THEN 0
                  WHEN first.hook_id = ANY($6) THEN 1
                  ELSE (SELECT count(*) FROM (
                      SELECT 1 FROM herald_deliveries d
                      WHERE d.hook_id = first.hook_id AND d.next_attempt_at IS NOT NULL
                        AND d.next_attempt_at <= $2
                      LIMIT $5) d)
                  END AS n) due)
             UNION ALL
             SELECT next.hook_id, next.next_attempt_at, due.n, w.seen + due.n
             FROM waiting w CROSS JOIN LATERAL (
                 SELECT hook_id, next_attempt_at FROM herald_deliveries
                 WHERE next_attempt_at IS NOT NULL AND hook_id > w.hook_id
                   AND ($4::text IS NULL OR hook_id <= $4)
                 ORDER BY hook_id, next_attempt_at LIMIT 1) next
             CROSS JOIN LATERAL (SELECT CASE
                 WHEN next.next_attempt_at > $2 THEN 0
                 WHEN next.hook_id = ANY($6) THEN 1
                 ELSE (SELECT count(*) FROM (
                     SELECT 1 FROM herald_deliveries d
                     WHERE d.hook_id = next.hook_id AND d.next_attempt_at IS NOT NULL
                       AND d.next_attempt_at <= $2
                     LIMIT $5) d)
                 END AS n) due
             WHERE w.seen < $3
         )
         SELECT w.hook_id, w.next_attempt_at, coalesce(h.enabled, false), w.due, w.seen
         FROM waiting w LEFT JOIN herald_hooks h ON h.id = w.hook_id",
        &[
            &from,
            &now,
            &counting.due_wanted,
            &through,
            &counting.cap,
            &counting.without_room,
        ],
    )?;
    // The count runs along the scan: the last row's is the whole.
    let seen = rows.iter().map(|r| r.get::<_, i64>(4)).max().unwrap_or(0);
    let waiting = rows
        .iter()
        .map(|r| Waiting {
            hook_id: r.get(0),
            oldest: r.get(1),
            enabled: r.get(2),
            due: r.get::<_, i64>(3) as usize,
        })
        .collect();
    Ok((waiting, seen))
}

/// Which of `hooks` another process holds leases of (live ones: an ended lease holds nothing).
///
/// `leased_by <> me` is written as two ranges, one query each, so that the index on `(hook_id,
/// leased_by)` seeks past this process's own entries: a hook's entries are mostly this process's,
/// and most of those are of deliveries already recorded, dead until a vacuum. Read through (`<>`
/// is no index condition, and an `OR` of the ranges was planned as a filter while the table's
/// statistics were young), they made this check take 2.3 ms a call on the throughput bench's
/// single hook, 9.4 ms on 100,000 deliveries of one hook, 99,000 of them recorded; seeking, 0.05.
pub(super) fn held_by_others(
    tx: &mut Tx<'_>,
    hooks: &[String],
    me: &str,
    now: i64,
) -> Result<std::collections::HashSet<String>> {
    if hooks.is_empty() {
        return Ok(Default::default());
    }
    Ok(tx
        .query(
            "SELECT hook_id FROM herald_deliveries
             WHERE status = 'delivering' AND hook_id = ANY($1) AND leased_by < $2
               AND next_attempt_at > $3
             UNION
             SELECT hook_id FROM herald_deliveries
             WHERE status = 'delivering' AND hook_id = ANY($1) AND leased_by > $2
               AND next_attempt_at > $3",
            &[&hooks, &me, &now],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Takes room for up to `n` deliveries of `hook`; how many it got.
fn reserve(taken: &mut Taken<'_>, hook: &str, n: usize) -> usize {
    let mut got = 0;
    while got < n && taken.take(hook) {
        got += 1;
    }
    got
}
