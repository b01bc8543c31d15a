//! What administrators look back at, per hook: the deliveries log (one entry per attempt), the event
//! history (one entry per event, with its delivery status), the actions on it (retry, discard), and
//! the retention window that keeps both bounded.
//!
//! Pages are newest first and cut by cursor: the sequence number of the last entry shown. New
//! entries get higher numbers, so they never shift a page that is being read.

use rusqlite::OptionalExtension;

use super::outbox::DeliveryStatus;
use super::{HeldEvent, History, Judgement, Result, ScriptFailure, Sqlite};
use crate::clock::now_ms;

/// One page of a listing, newest first.
#[derive(Debug, Clone)]
pub struct Page<T, C = i64> {
    pub items: Vec<T>,
    /// Pass as the cursor of the next page; `None` on the last page.
    pub next_cursor: Option<C>,
}

/// One attempt, as a line of the deliveries log.
#[derive(Debug, Clone)]
pub struct AttemptEntry {
    /// The attempt's sequence number: its id in the API, and the cursor.
    pub seq: i64,
    pub event_id: String,
    pub event_name: String,
    pub resource_name: Option<String>,
    pub resource_id: Option<i64>,
    pub event_type: Option<String>,
    /// The `webhook-id` of the request.
    pub message_id: String,
    pub attempt: u32,
    pub started_at: i64,
    pub duration_ms: i64,
    pub outcome: String,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    /// Of an event sent by hand to try the hook.
    pub test: bool,
    /// Of an event queued by this backfill.
    pub backfill_id: Option<String>,
}

/// One attempt in full: what was sent and what came back.
#[derive(Debug, Clone)]
pub struct AttemptDetail {
    pub entry: AttemptEntry,
    pub url: Option<String>,
    /// JSON object; the authorization header is masked when stored.
    pub request_headers: String,
    pub payload: String,
    pub response_headers: Option<String>,
    pub response_body: Option<String>,
}

/// One event of a hook, with where its delivery to that hook stands.
#[derive(Debug, Clone)]
pub struct HookEvent {
    /// The delivery's sequence number: the cursor.
    pub seq: i64,
    pub event_id: String,
    pub message_id: String,
    pub event_name: String,
    pub resource_name: Option<String>,
    pub resource_id: Option<i64>,
    pub event_type: Option<String>,
    pub company_id: Option<i64>,
    pub project_id: Option<i64>,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub next_attempt_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Why it is held: the hook's filter failed on it (status `failed`, no attempt made).
    pub filter_error: Option<String>,
    /// Sent by hand to try the hook.
    pub test: bool,
    /// Queued by this backfill.
    pub backfill_id: Option<String>,
}

/// Which events of a hook a listing shows.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub status: Option<DeliveryStatus>,
    pub resource_name: Option<String>,
    pub event_type: Option<String>,
}

/// What a retry or discard of one event came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventAction {
    Done,
    /// The hook has no such event.
    NotFound,
    /// The event is not in a status the action applies to (an attempt in flight cannot be retried;
    /// only a waiting event can be discarded).
    Conflict(DeliveryStatus),
}

const ATTEMPT_COLUMNS: &str =
    "a.seq, e.id, e.trigger_name, e.resource_name, e.row_id, e.event_type, \
     d.id, a.attempt, a.started_at, a.duration_ms, a.outcome, a.status_code, a.error, e.test, \
     e.backfill_id";

fn attempt_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<AttemptEntry> {
    Ok(AttemptEntry {
        seq: r.get(0)?,
        event_id: r.get(1)?,
        event_name: r.get(2)?,
        resource_name: r.get(3)?,
        resource_id: r.get(4)?,
        event_type: r.get(5)?,
        message_id: r.get(6)?,
        attempt: r.get(7)?,
        started_at: r.get(8)?,
        duration_ms: r.get(9)?,
        outcome: r.get(10)?,
        status_code: r.get(11)?,
        error: r.get(12)?,
        test: r.get(13)?,
        backfill_id: r.get(14)?,
    })
}

/// The page of `items`, read with one row more than `limit`: its presence says there is a next
/// page, and the cursor is that of the last item kept.
pub(in crate::store) fn page<T, C>(
    mut items: Vec<T>,
    limit: usize,
    seq: impl Fn(&T) -> C,
) -> Page<T, C> {
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(seq)
    } else {
        None
    };
    Page { items, next_cursor }
}

impl History for Sqlite {
    /// The deliveries log of a hook: its attempts, newest first, before cursor `before`.
    fn hook_attempts(
        &self,
        hook_id: &str,
        only_failures: bool,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Page<AttemptEntry>> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {ATTEMPT_COLUMNS}
             FROM herald_attempts a
             JOIN herald_deliveries d ON d.seq = a.delivery_seq
             JOIN herald_events e ON e.seq = d.event_seq
             WHERE d.hook_id = ?1 AND (?2 IS NULL OR a.seq < ?2)
               AND (?3 = 0 OR a.outcome != 'success')
             ORDER BY a.seq DESC LIMIT ?4"
        ))?;
        let items = stmt
            .query_map(
                (hook_id, before, only_failures, limit as i64 + 1),
                attempt_entry,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(page(items, limit, |a| a.seq))
    }

    /// One attempt of a hook in full.
    fn hook_attempt(&self, hook_id: &str, seq: i64) -> Result<Option<AttemptDetail>> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {ATTEMPT_COLUMNS}, a.url, a.request_headers, e.payload, a.response_headers,
                    a.response_body
             FROM herald_attempts a
             JOIN herald_deliveries d ON d.seq = a.delivery_seq
             JOIN herald_events e ON e.seq = d.event_seq
             WHERE d.hook_id = ?1 AND a.seq = ?2"
        ))?;
        let detail = stmt
            .query_row((hook_id, seq), |r| {
                Ok(AttemptDetail {
                    entry: attempt_entry(r)?,
                    url: r.get(15)?,
                    request_headers: r.get(16)?,
                    payload: r.get(17)?,
                    response_headers: r.get(18)?,
                    response_body: r.get(19)?,
                })
            })
            .optional()?;
        Ok(detail)
    }

    /// How many of a hook's deliveries stand in each status, within the retention window. Counts
    /// the hook's rows through the `(hook_id, seq)` index: the cost follows the hook's history,
    /// which retention bounds.
    fn hook_delivery_counts(&self, hook_id: &str) -> Result<Vec<(DeliveryStatus, u64)>> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT status, count(*) FROM herald_deliveries WHERE hook_id = ?1 GROUP BY status",
        )?;
        let counts = stmt
            .query_map([hook_id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(counts
            .into_iter()
            .filter_map(|(status, n)| Some((DeliveryStatus::parse(&status)?, n as u64)))
            .collect())
    }

    /// The event history of a hook, newest first, before cursor `before`.
    fn hook_events(
        &self,
        hook_id: &str,
        filter: &EventFilter,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Page<HookEvent>> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT d.seq, e.id, d.id, e.trigger_name, e.resource_name, e.row_id, e.event_type,
                    e.company_id, e.project_id, d.status, d.attempts, d.next_attempt_at,
                    d.created_at, d.updated_at, d.filter_error, e.test,
                    e.backfill_id
             FROM herald_deliveries d JOIN herald_events e ON e.seq = d.event_seq
             WHERE d.hook_id = ?1 AND (?2 IS NULL OR d.seq < ?2)
               AND (?3 IS NULL OR d.status = ?3)
               AND (?4 IS NULL OR e.resource_name = ?4)
               AND (?5 IS NULL OR e.event_type = ?5)
             ORDER BY d.seq DESC LIMIT ?6",
        )?;
        let items = stmt
            .query_map(
                (
                    hook_id,
                    before,
                    filter.status.map(DeliveryStatus::as_str),
                    &filter.resource_name,
                    &filter.event_type,
                    limit as i64 + 1,
                ),
                |r| {
                    let status: String = r.get(9)?;
                    Ok(HookEvent {
                        seq: r.get(0)?,
                        event_id: r.get(1)?,
                        message_id: r.get(2)?,
                        event_name: r.get(3)?,
                        resource_name: r.get(4)?,
                        resource_id: r.get(5)?,
                        event_type: r.get(6)?,
                        company_id: r.get(7)?,
                        project_id: r.get(8)?,
                        status: DeliveryStatus::parse(&status).unwrap_or(DeliveryStatus::Failed),
                        attempts: r.get(10)?,
                        next_attempt_at: r.get(11)?,
                        created_at: r.get(12)?,
                        updated_at: r.get(13)?,
                        filter_error: r.get(14)?,
                        test: r.get(15)?,
                        backfill_id: r.get(16)?,
                    })
                },
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(page(items, limit, |e| e.seq))
    }

    /// Makes one event of a hook due now, whatever its status but `delivering`. A delivered event is
    /// sent again; a failed or discarded one gets one more attempt.
    fn retry_hook_event(&self, hook_id: &str, event_id: &str) -> Result<EventAction> {
        self.act_on_event(hook_id, event_id, |status| status != DeliveryStatus::Delivering, |tx, seq, now| {
            tx.execute(
                "UPDATE herald_deliveries SET status = 'pending', next_attempt_at = ?2, updated_at = ?2,
                        filter_error = NULL
                 WHERE seq = ?1",
                (seq, now),
            )
        })
    }

    /// Drops one waiting event of a hook (pending or retrying) without delivering it.
    fn discard_hook_event(&self, hook_id: &str, event_id: &str) -> Result<EventAction> {
        self.act_on_event(
            hook_id,
            event_id,
            |status| matches!(status, DeliveryStatus::Pending | DeliveryStatus::Retrying),
            |tx, seq, now| {
                tx.execute(
                    "UPDATE herald_deliveries SET status = 'discarded', next_attempt_at = NULL, updated_at = ?2
                     WHERE seq = ?1",
                    (seq, now),
                )
            },
        )
    }

    /// Makes every event of a hook that failed at or after `since` (Unix ms) due now, and those
    /// discarded since then too when `include_discarded` (what a disabled hook missed): recovery
    /// after the target's outage. An event counts by when it failed, not when it was created: the
    /// outage began with events that were already on their way. Events held by a failing filter
    /// are not among them: they wait for the filter (`settle_held_events`). Returns how many.
    fn retry_failed_since(
        &self,
        hook_id: &str,
        since: i64,
        include_discarded: bool,
    ) -> Result<usize> {
        self.write(|tx| {
            let now = now_ms();
            let count = tx.execute(
                "UPDATE herald_deliveries SET status = 'pending', next_attempt_at = ?3, updated_at = ?3
                 WHERE hook_id = ?1 AND updated_at >= ?2 AND filter_error IS NULL
                   AND (status = 'failed' OR (?4 AND status = 'discarded'))",
                (hook_id, since, now, include_discarded),
            )?;
            Ok(count)
        })
    }

    /// Deletes at most `batch` events created before `cutoff` (Unix ms) whose deliveries are all
    /// final, with their deliveries and attempts, and script failures older than `cutoff`. Returns
    /// how many events went. Small batches keep each write transaction short, so deliveries and the
    /// application's own writes never wait long behind the clean-up.
    fn purge_before(&self, cutoff: i64, batch: usize) -> Result<usize> {
        self.write(|tx| {
            let events: Vec<i64> = {
                let mut stmt = tx.prepare_cached(
                    "SELECT e.seq FROM herald_events e
                     WHERE e.created_at < ?1
                       AND NOT EXISTS (SELECT 1 FROM herald_deliveries d
                                       WHERE d.event_seq = e.seq AND d.next_attempt_at IS NOT NULL)
                     ORDER BY e.seq LIMIT ?2",
                )?;
                let rows = stmt
                    .query_map((cutoff, batch as i64), |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                rows
            };
            let list = serde_json::to_string(&events).expect("integers serialise");
            tx.execute(
                "DELETE FROM herald_attempts WHERE delivery_seq IN
                   (SELECT seq FROM herald_deliveries WHERE event_seq IN (SELECT value FROM json_each(?1)))",
                [&list],
            )?;
            tx.execute(
                "DELETE FROM herald_deliveries WHERE event_seq IN (SELECT value FROM json_each(?1))",
                [&list],
            )?;
            tx.execute(
                "DELETE FROM herald_events WHERE seq IN (SELECT value FROM json_each(?1))",
                [&list],
            )?;
            tx.execute(
                "DELETE FROM herald_script_failures WHERE seq IN
                   (SELECT seq FROM herald_script_failures WHERE created_at < ?1 ORDER BY seq LIMIT ?2)",
                (cutoff, batch as i64),
            )?;
            tx.execute(
                "DELETE FROM herald_gone_subscriptions WHERE gone_at < ?1",
                [cutoff],
            )?;
            Ok(events.len())
        })
    }

    fn hook_oldest_waiting(&self, hook_id: &str) -> Result<Option<i64>> {
        let oldest = self
            .reader()
            .prepare_cached(
                "SELECT min(created_at) FROM herald_deliveries
                 WHERE hook_id = ?1 AND next_attempt_at IS NOT NULL",
            )?
            .query_row([hook_id], |r| r.get(0))?;
        Ok(oldest)
    }

    fn filter_held_events(
        &self,
        hook_id: &str,
        event_id: Option<&str>,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Vec<HeldEvent>> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT e.id, e.trigger_name, e.payload, e.resource_name, e.event_type, e.row_id,
                    d.filter_error, d.seq
             FROM herald_deliveries d JOIN herald_events e ON e.seq = d.event_seq
             WHERE d.hook_id = ?1 AND d.filter_error IS NOT NULL AND (?2 IS NULL OR e.id = ?2)
               AND (?3 IS NULL OR d.seq > ?3)
             ORDER BY d.seq LIMIT ?4",
        )?;
        let held = stmt
            .query_map((hook_id, event_id, after, limit as i64), |r| {
                Ok(HeldEvent {
                    event_id: r.get(0)?,
                    event_name: r.get(1)?,
                    payload: r.get(2)?,
                    resource_name: r.get(3)?,
                    event_type: r.get(4)?,
                    row_id: r.get(5)?,
                    error: r.get(6)?,
                    seq: r.get(7)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(held)
    }

    fn settle_held_events(&self, hook_id: &str, judged: &[(String, Judgement)]) -> Result<usize> {
        if judged.is_empty() {
            return Ok(0);
        }
        self.write(|tx| {
            let now = now_ms();
            let mut settle = tx.prepare_cached(
                "UPDATE herald_deliveries
                 SET status = CASE ?3 WHEN 'passed' THEN 'pending' WHEN 'rejected' THEN 'discarded'
                                      ELSE status END,
                     next_attempt_at = CASE ?3 WHEN 'passed' THEN ?5 ELSE NULL END,
                     filter_error = CASE ?3 WHEN 'failed' THEN ?4 ELSE NULL END,
                     updated_at = ?5
                 WHERE hook_id = ?1 AND filter_error IS NOT NULL
                   AND event_seq = (SELECT seq FROM herald_events WHERE id = ?2)",
            )?;
            let (mut due, mut rejected) = (0, 0);
            for (event_id, judgement) in judged {
                let (verdict, error) = judgement_columns(judgement);
                let changed = settle.execute((hook_id, event_id, verdict, error, now))?;
                match judgement {
                    Judgement::Passed => due += changed,
                    Judgement::Rejected => rejected += changed,
                    Judgement::Failed(_) => {}
                }
            }
            if rejected > 0 {
                tx.execute(
                    "UPDATE herald_hooks SET filtered_out = filtered_out + ?2 WHERE id = ?1",
                    (hook_id, rejected as i64),
                )?;
            }
            Ok(due)
        })
    }

    /// The newest script failures, newest first.
    fn recent_script_failures(&self, limit: usize) -> Result<Vec<ScriptFailure>> {
        let conn = self.reader();
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

impl Sqlite {
    fn act_on_event(
        &self,
        hook_id: &str,
        event_id: &str,
        applies: impl Fn(DeliveryStatus) -> bool,
        act: impl Fn(&rusqlite::Transaction<'_>, i64, i64) -> rusqlite::Result<usize>,
    ) -> Result<EventAction> {
        self.write(|tx| {
            let found: Option<(i64, String)> = tx
                .query_row(
                    "SELECT d.seq, d.status FROM herald_deliveries d
                     JOIN herald_events e ON e.seq = d.event_seq
                     WHERE d.hook_id = ?1 AND e.id = ?2",
                    (hook_id, event_id),
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((seq, status)) = found else {
                return Ok(EventAction::NotFound);
            };
            let status = DeliveryStatus::parse(&status).unwrap_or(DeliveryStatus::Failed);
            if !applies(status) {
                return Ok(EventAction::Conflict(status));
            }
            act(tx, seq, now_ms())?;
            Ok(EventAction::Done)
        })
    }
}

/// A judgement as `settle_held_events` stores it: its verdict and, for a failure, the error.
pub(in crate::store) fn judgement_columns(judgement: &Judgement) -> (&'static str, Option<&str>) {
    match judgement {
        Judgement::Passed => ("passed", None),
        Judgement::Rejected => ("rejected", None),
        Judgement::Failed(error) => ("failed", Some(error.as_str())),
    }
}
