//! Backfills on PostgreSQL, as on SQLite (see `store::backfills`).

use postgres::Row;

use super::connection::Queries;
use super::{storable, Postgres, Result};
use crate::clock::now_ms;
use crate::store::{Backfill, BackfillStatus, BackfillStep, Backfills};

const BACKFILL_COLUMNS: &str =
    "id, hook_id, event_name, status, total, done, failed, error, created_at, updated_at";

fn backfill_from_row(r: &Row) -> Backfill {
    Backfill {
        id: r.get(0),
        hook_id: r.get(1),
        event_name: r.get(2),
        status: BackfillStatus::parse(r.get(3)),
        total: r.get::<_, i64>(4) as u64,
        done: r.get::<_, i64>(5) as u64,
        failed: r.get::<_, i64>(6) as u64,
        error: r.get(7),
        created_at: r.get(8),
        updated_at: r.get(9),
    }
}

impl Backfills for Postgres {
    fn create_backfill(&self, hook_id: &str, event_name: &str, total: u64) -> Result<Backfill> {
        self.write(|tx| {
            let now = now_ms();
            let row = tx.query_one(
                &format!(
                    "INSERT INTO herald_backfills (id, hook_id, event_name, status, total, done,
                                                   failed, created_at, updated_at)
                     VALUES ($1, $2, $3, 'preparing', $4, 0, 0, $5, $5)
                     RETURNING {BACKFILL_COLUMNS}"
                ),
                &[
                    &crate::ids::backfill_id().as_str(),
                    &hook_id,
                    &event_name,
                    &(total as i64),
                    &now,
                ],
            )?;
            Ok(backfill_from_row(&row))
        })
    }

    fn add_backfill_rows(&self, id: &str, first_position: u64, row_ids: &[i64]) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO herald_backfill_rows (backfill_id, position, row_id)
                 SELECT $1, $2 + r.n - 1, r.row_id
                 FROM unnest($3::int8[]) WITH ORDINALITY AS r(row_id, n)",
                &[&id, &(first_position as i64), &row_ids],
            )?;
            Ok(())
        })
    }

    fn start_backfill(&self, id: &str) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE herald_backfills SET status = 'running', updated_at = $2
                 WHERE id = $1 AND status = 'preparing'",
                &[&id, &now_ms()],
            )?;
            Ok(())
        })
    }

    fn get_backfill(&self, hook_id: &str, id: &str) -> Result<Option<Backfill>> {
        Ok(self
            .client()?
            .query_opt(
                &format!(
                    "SELECT {BACKFILL_COLUMNS} FROM herald_backfills WHERE id = $1 AND hook_id = $2"
                ),
                &[&id, &hook_id],
            )?
            .as_ref()
            .map(backfill_from_row))
    }

    fn hook_backfills(&self, hook_id: &str, limit: usize) -> Result<Vec<Backfill>> {
        Ok(self
            .client()?
            .query(
                &format!(
                    "SELECT {BACKFILL_COLUMNS} FROM herald_backfills WHERE hook_id = $1
                     ORDER BY created_at DESC, id DESC LIMIT $2"
                ),
                &[&hook_id, &(limit as i64)],
            )?
            .iter()
            .map(backfill_from_row)
            .collect())
    }

    fn running_backfills(&self) -> Result<Vec<Backfill>> {
        Ok(self
            .client()?
            .query(
                &format!(
                    "SELECT {BACKFILL_COLUMNS} FROM herald_backfills WHERE status = 'running'
                     ORDER BY created_at, id"
                ),
                &[],
            )?
            .iter()
            .map(backfill_from_row)
            .collect())
    }

    fn backfill_rows(&self, id: &str, from: u64, limit: usize) -> Result<Vec<i64>> {
        Ok(self
            .client()?
            .query(
                "SELECT row_id FROM herald_backfill_rows
                 WHERE backfill_id = $1 AND position >= $2 ORDER BY position LIMIT $3",
                &[&id, &(from as i64), &(limit as i64)],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    fn record_backfill_step(&self, step: &BackfillStep<'_>) -> Result<bool> {
        self.write(|tx| {
            let now = now_ms();
            let moved = tx.execute(
                "UPDATE herald_backfills
                 SET done = $3, failed = failed + $4, updated_at = $5,
                     status = CASE WHEN $3 >= total THEN 'done' ELSE status END
                 WHERE id = $1 AND status = 'running' AND done = $2",
                &[
                    &step.backfill_id,
                    &(step.from as i64),
                    &(step.through as i64),
                    &(step.failures.len() as i64),
                    &now,
                ],
            )?;
            if moved == 0 {
                return Ok(false);
            }
            if !step.events.is_empty() {
                let ids: Vec<&str> = step.events.iter().map(|e| e.id.as_str()).collect();
                let triggers: Vec<&str> = step.events.iter().map(|e| e.trigger.as_str()).collect();
                let row_ids: Vec<Option<i64>> = step.events.iter().map(|e| e.row_id).collect();
                let payloads: Vec<String> = step
                    .events
                    .iter()
                    .map(|e| storable(&e.payload).into_owned())
                    .collect();
                let hashes: Vec<Option<&str>> = step
                    .events
                    .iter()
                    .map(|e| e.script_hash.as_deref())
                    .collect();
                let companies: Vec<Option<i64>> =
                    step.events.iter().map(|e| e.company_id).collect();
                let projects: Vec<Option<i64>> = step.events.iter().map(|e| e.project_id).collect();
                let message_ids: Vec<String> = step
                    .events
                    .iter()
                    .map(|_| crate::ids::message_id())
                    .collect();
                // One statement for the events and one for their deliveries, in the step's order.
                tx.execute(
                    "WITH e AS (
                         INSERT INTO herald_events (id, trigger_name, row_id, payload, change_id,
                                                    script_hash, company_id, project_id,
                                                    created_at, backfill_id)
                         SELECT e.id, e.trigger_name, e.row_id, e.payload, NULL, e.script_hash,
                                e.company_id, e.project_id, $8, $9
                         FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[],
                                     $6::int8[], $7::int8[])
                              WITH ORDINALITY AS e(id, trigger_name, row_id, payload, script_hash,
                                                   company_id, project_id, n)
                         ORDER BY e.n
                         RETURNING id, seq
                     )
                     INSERT INTO herald_deliveries (id, event_seq, hook_id, status, attempts,
                                                    next_attempt_at, created_at, updated_at)
                     SELECT m.message_id, e.seq, $10, 'pending', 0, $8, $8, $8
                     FROM unnest($1::text[], $11::text[]) AS m(event_id, message_id)
                     JOIN e ON e.id = m.event_id
                     ORDER BY e.seq",
                    &[
                        &ids,
                        &triggers,
                        &row_ids,
                        &payloads,
                        &hashes,
                        &companies,
                        &projects,
                        &now,
                        &step.backfill_id,
                        &step.hook_id,
                        &message_ids,
                    ],
                )?;
                super::signals::deliveries_waiting(tx, self.schema())?;
            }
            super::outbox::insert_failures(tx, step.failures)?;
            tx.execute(
                "DELETE FROM herald_backfill_rows WHERE backfill_id = $1 AND position < $2",
                &[&step.backfill_id, &(step.through as i64)],
            )?;
            Ok(true)
        })
    }

    fn cancel_backfill(&self, hook_id: &str, id: &str) -> Result<bool> {
        self.write(|tx| {
            let cancelled = tx.execute(
                "UPDATE herald_backfills SET status = 'cancelled', updated_at = $3
                 WHERE id = $1 AND hook_id = $2 AND status IN ('preparing', 'running')",
                &[&id, &hook_id, &now_ms()],
            )? > 0;
            if cancelled {
                tx.execute(
                    "DELETE FROM herald_backfill_rows WHERE backfill_id = $1",
                    &[&id],
                )?;
            }
            Ok(cancelled)
        })
    }

    fn fail_backfill(&self, id: &str, error: &str) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE herald_backfills SET status = 'failed', error = $2, updated_at = $3
                 WHERE id = $1 AND status IN ('preparing', 'running')",
                &[&id, &storable(error), &now_ms()],
            )?;
            tx.execute(
                "DELETE FROM herald_backfill_rows WHERE backfill_id = $1",
                &[&id],
            )?;
            Ok(())
        })
    }

    fn hook_waiting(&self, hook_id: &str) -> Result<u64> {
        Ok(self
            .client()?
            .query_one(
                "SELECT count(*) FROM herald_deliveries
                 WHERE hook_id = $1 AND next_attempt_at IS NOT NULL",
                &[&hook_id],
            )?
            .get::<_, i64>(0) as u64)
    }
}
