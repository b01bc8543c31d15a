//! History on PostgreSQL: the deliveries log, the event history, retry and discard, retention and
//! script failures, as on SQLite (see `store::history`).

use postgres::Row;

use super::connection::{Queries, Tx};

use super::{storable, Postgres, Result};
use crate::clock::now_ms;
use crate::store::history::{judgement_columns, page};
use crate::store::{
    AttemptDetail, AttemptEntry, DeliveryStatus, EventAction, EventFilter, HeldEvent, History,
    HookEvent, Judgement, Page, ScriptFailure,
};

const ATTEMPT_COLUMNS: &str =
    "a.seq, e.id, e.trigger_name, e.resource_name, e.row_id, e.event_type, \
     d.id, a.attempt, a.started_at, a.duration_ms, a.outcome, a.status_code, a.error, e.test, \
     e.backfill_id";

fn attempt_entry(r: &Row) -> AttemptEntry {
    AttemptEntry {
        seq: r.get(0),
        event_id: r.get(1),
        event_name: r.get(2),
        resource_name: r.get(3),
        resource_id: r.get(4),
        event_type: r.get(5),
        message_id: r.get(6),
        attempt: r.get::<_, i32>(7) as u32,
        started_at: r.get(8),
        duration_ms: r.get(9),
        outcome: r.get(10),
        status_code: r.get::<_, Option<i32>>(11).map(|c| c as u16),
        error: r.get(12),
        test: r.get(13),
        backfill_id: r.get(14),
    }
}

impl History for Postgres {
    fn hook_attempts(
        &self,
        hook_id: &str,
        only_failures: bool,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Page<AttemptEntry>> {
        let rows = self.client()?.query(
            &format!(
                "SELECT {ATTEMPT_COLUMNS}
                 FROM herald_attempts a
                 JOIN herald_deliveries d ON d.seq = a.delivery_seq
                 JOIN herald_events e ON e.seq = d.event_seq
                 WHERE d.hook_id = $1 AND ($2::int8 IS NULL OR a.seq < $2)
                   AND (NOT $3 OR a.outcome <> 'success')
                 ORDER BY a.seq DESC LIMIT $4"
            ),
            &[&hook_id, &before, &only_failures, &(limit as i64 + 1)],
        )?;
        Ok(page(rows.iter().map(attempt_entry).collect(), limit, |a| {
            a.seq
        }))
    }

    fn hook_attempt(&self, hook_id: &str, seq: i64) -> Result<Option<AttemptDetail>> {
        let row = self.client()?.query_opt(
            &format!(
                "SELECT {ATTEMPT_COLUMNS}, a.url, a.request_headers, e.payload, a.response_headers,
                        a.response_body
                 FROM herald_attempts a
                 JOIN herald_deliveries d ON d.seq = a.delivery_seq
                 JOIN herald_events e ON e.seq = d.event_seq
                 WHERE d.hook_id = $1 AND a.seq = $2"
            ),
            &[&hook_id, &seq],
        )?;
        Ok(row.map(|r| AttemptDetail {
            entry: attempt_entry(&r),
            url: r.get(15),
            request_headers: r.get(16),
            payload: r.get(17),
            response_headers: r.get(18),
            response_body: r.get(19),
        }))
    }

    fn hook_delivery_counts(&self, hook_id: &str) -> Result<Vec<(DeliveryStatus, u64)>> {
        let rows = self.client()?.query(
            "SELECT status, count(*) FROM herald_deliveries WHERE hook_id = $1 GROUP BY status",
            &[&hook_id],
        )?;
        Ok(rows
            .iter()
            .filter_map(|r| Some((DeliveryStatus::parse(r.get(0))?, r.get::<_, i64>(1) as u64)))
            .collect())
    }

    fn hook_events(
        &self,
        hook_id: &str,
        filter: &EventFilter,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Page<HookEvent>> {
        let rows = self.client()?.query(
            "SELECT d.seq, e.id, d.id, e.trigger_name, e.resource_name, e.row_id, e.event_type,
                    e.company_id, e.project_id, d.status, d.attempts, d.next_attempt_at,
                    d.created_at, d.updated_at, d.filter_error, e.test,
                    e.backfill_id
             FROM herald_deliveries d JOIN herald_events e ON e.seq = d.event_seq
             WHERE d.hook_id = $1 AND ($2::int8 IS NULL OR d.seq < $2)
               AND ($3::text IS NULL OR d.status = $3)
               AND ($4::text IS NULL OR e.resource_name = $4)
               AND ($5::text IS NULL OR e.event_type = $5)
             ORDER BY d.seq DESC LIMIT $6",
            &[
                &hook_id,
                &before,
                &filter.status.map(DeliveryStatus::as_str),
                &filter.resource_name,
                &filter.event_type,
                &(limit as i64 + 1),
            ],
        )?;
        let items = rows
            .iter()
            .map(|r| HookEvent {
                seq: r.get(0),
                event_id: r.get(1),
                message_id: r.get(2),
                event_name: r.get(3),
                resource_name: r.get(4),
                resource_id: r.get(5),
                event_type: r.get(6),
                company_id: r.get(7),
                project_id: r.get(8),
                status: DeliveryStatus::parse(r.get(9)).unwrap_or(DeliveryStatus::Failed),
                attempts: r.get::<_, i32>(10) as u32,
                next_attempt_at: r.get(11),
                created_at: r.get(12),
                updated_at: r.get(13),
                filter_error: r.get(14),
                test: r.get(15),
                backfill_id: r.get(16),
            })
            .collect();
        Ok(page(items, limit, |e| e.seq))
    }

    fn retry_hook_event(&self, hook_id: &str, event_id: &str) -> Result<EventAction> {
        self.act_on_event(
            hook_id,
            event_id,
            |status| status != DeliveryStatus::Delivering,
            "UPDATE herald_deliveries SET status = 'pending', next_attempt_at = $2, updated_at = $2,
                    filter_error = NULL
             WHERE seq = $1",
        )
    }

    fn discard_hook_event(&self, hook_id: &str, event_id: &str) -> Result<EventAction> {
        self.act_on_event(
            hook_id,
            event_id,
            |status| matches!(status, DeliveryStatus::Pending | DeliveryStatus::Retrying),
            "UPDATE herald_deliveries SET status = 'discarded', next_attempt_at = NULL, updated_at = $2
             WHERE seq = $1",
        )
    }

    fn retry_failed_since(
        &self,
        hook_id: &str,
        since: i64,
        include_discarded: bool,
    ) -> Result<usize> {
        self.write(|tx| {
            let count = tx.execute(
                "UPDATE herald_deliveries SET status = 'pending', next_attempt_at = $3, updated_at = $3
                 WHERE hook_id = $1 AND updated_at >= $2 AND filter_error IS NULL
                   AND (status = 'failed' OR ($4 AND status = 'discarded'))",
                &[&hook_id, &since, &now_ms(), &include_discarded],
            )?;
            if count > 0 {
                super::signals::deliveries_waiting(tx, self.schema())?;
            }
            Ok(count as usize)
        })
    }

    fn purge_before(&self, cutoff: i64, batch: usize) -> Result<usize> {
        self.write(|tx| {
            let events: Vec<i64> = tx
                .query(
                    "SELECT e.seq FROM herald_events e
                     WHERE e.created_at < $1
                       AND NOT EXISTS (SELECT 1 FROM herald_deliveries d
                                       WHERE d.event_seq = e.seq AND d.next_attempt_at IS NOT NULL)
                     ORDER BY e.seq LIMIT $2",
                    &[&cutoff, &(batch as i64)],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect();
            tx.execute(
                "DELETE FROM herald_attempts WHERE delivery_seq IN
                   (SELECT seq FROM herald_deliveries WHERE event_seq = ANY($1))",
                &[&events],
            )?;
            tx.execute(
                "DELETE FROM herald_deliveries WHERE event_seq = ANY($1)",
                &[&events],
            )?;
            tx.execute("DELETE FROM herald_events WHERE seq = ANY($1)", &[&events])?;
            tx.execute(
                "DELETE FROM herald_script_failures WHERE seq IN
                   (SELECT seq FROM herald_script_failures WHERE created_at < $1 ORDER BY seq LIMIT $2)",
                &[&cutoff, &(batch as i64)],
            )?;
            tx.execute(
                "DELETE FROM herald_gone_subscriptions WHERE gone_at < $1",
                &[&cutoff],
            )?;
            Ok(events.len())
        })
    }

    fn hook_oldest_waiting(&self, hook_id: &str) -> Result<Option<i64>> {
        Ok(self
            .client()?
            .query_one(
                "SELECT min(created_at) FROM herald_deliveries
                 WHERE hook_id = $1 AND next_attempt_at IS NOT NULL",
                &[&hook_id],
            )?
            .get(0))
    }

    fn filter_held_events(
        &self,
        hook_id: &str,
        event_id: Option<&str>,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Vec<HeldEvent>> {
        Ok(self
            .client()?
            .query(
                "SELECT e.id, e.trigger_name, e.payload, e.resource_name, e.event_type, e.row_id,
                        d.filter_error, d.seq
                 FROM herald_deliveries d JOIN herald_events e ON e.seq = d.event_seq
                 WHERE d.hook_id = $1 AND d.filter_error IS NOT NULL
                   AND ($2::text IS NULL OR e.id = $2) AND ($3::int8 IS NULL OR d.seq > $3)
                 ORDER BY d.seq LIMIT $4",
                &[&hook_id, &event_id, &after, &(limit as i64)],
            )?
            .iter()
            .map(|r| HeldEvent {
                event_id: r.get(0),
                event_name: r.get(1),
                payload: r.get(2),
                resource_name: r.get(3),
                event_type: r.get(4),
                row_id: r.get(5),
                error: r.get(6),
                seq: r.get(7),
            })
            .collect())
    }

    fn settle_held_events(&self, hook_id: &str, judged: &[(String, Judgement)]) -> Result<usize> {
        if judged.is_empty() {
            return Ok(0);
        }
        self.write(|tx| {
            let now = now_ms();
            let (mut due, mut rejected) = (0u64, 0i64);
            for (event_id, judgement) in judged {
                let (verdict, error) = judgement_columns(judgement);
                let error = error.map(|e| storable(e).into_owned());
                let changed = tx.execute(
                    "UPDATE herald_deliveries
                     SET status = CASE $3 WHEN 'passed' THEN 'pending' WHEN 'rejected' THEN 'discarded'
                                          ELSE status END,
                         next_attempt_at = CASE $3 WHEN 'passed' THEN $5::int8 ELSE NULL END,
                         filter_error = CASE $3 WHEN 'failed' THEN $4 ELSE NULL END,
                         updated_at = $5
                     WHERE hook_id = $1 AND filter_error IS NOT NULL
                       AND event_seq = (SELECT seq FROM herald_events WHERE id = $2)",
                    &[&hook_id, event_id, &verdict, &error, &now],
                )?;
                match judgement {
                    Judgement::Passed => due += changed,
                    Judgement::Rejected => rejected += changed as i64,
                    Judgement::Failed(_) => {}
                }
            }
            if rejected > 0 {
                tx.execute(
                    "UPDATE herald_hooks SET filtered_out = filtered_out + $2 WHERE id = $1",
                    &[&hook_id, &rejected],
                )?;
            }
            if due > 0 {
                super::signals::deliveries_waiting(tx, self.schema())?;
            }
            Ok(due as usize)
        })
    }

    fn recent_script_failures(&self, limit: usize) -> Result<Vec<ScriptFailure>> {
        let rows = self.client()?.query(
            "SELECT script, line, col, message, trigger_name, table_name, row_id, change_id
             FROM herald_script_failures ORDER BY seq DESC LIMIT $1",
            &[&(limit as i64)],
        )?;
        Ok(rows
            .iter()
            .map(|r| ScriptFailure {
                script: r.get(0),
                line: r.get::<_, Option<i32>>(1).map(|n| n as u32),
                col: r.get::<_, Option<i32>>(2).map(|n| n as u32),
                message: r.get(3),
                trigger: r.get(4),
                table: r.get(5),
                row_id: r.get(6),
                change_id: r.get(7),
            })
            .collect())
    }
}

impl Postgres {
    /// Applies `action` (an UPDATE of delivery `$1` at time `$2`) to a hook's event if its status
    /// allows; the delivery's row is locked first, so a claim cannot lease it meanwhile.
    fn act_on_event(
        &self,
        hook_id: &str,
        event_id: &str,
        applies: impl Fn(DeliveryStatus) -> bool,
        action: &str,
    ) -> Result<EventAction> {
        self.write(|tx: &mut Tx<'_>| {
            let found = tx.query_opt(
                "SELECT d.seq, d.status FROM herald_deliveries d
                 JOIN herald_events e ON e.seq = d.event_seq
                 WHERE d.hook_id = $1 AND e.id = $2
                 FOR UPDATE OF d",
                &[&hook_id, &event_id],
            )?;
            let Some(found) = found else {
                return Ok(EventAction::NotFound);
            };
            let seq: i64 = found.get(0);
            let status = DeliveryStatus::parse(found.get(1)).unwrap_or(DeliveryStatus::Failed);
            if !applies(status) {
                return Ok(EventAction::Conflict(status));
            }
            tx.execute(action, &[&seq, &now_ms()])?;
            super::signals::deliveries_waiting(tx, self.schema())?;
            Ok(EventAction::Done)
        })
    }
}
