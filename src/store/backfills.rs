//! Backfills: the records that already exist, rendered as events for one hook, so that a new
//! integration starts with them. A backfill is its row ids, stored in order when it is made
//! (`herald_backfill_rows`), and a position (`done`): each step renders the next rows and stores
//! their events with the new position in one transaction, so a step is queued once, whatever
//! stops the process, and a backfill resumes where it stood. This file holds the types both
//! backends share and the SQLite implementation of `Backfills`.

use rusqlite::{OptionalExtension, Row};

use super::script_failures::insert_failures;
use super::{Backfills, NewEvent, Result, ScriptFailure, Sqlite};
use crate::clock::now_ms;

/// Where a backfill stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackfillStatus {
    /// Its rows are being stored; nothing is queued yet.
    Preparing,
    /// Queuing its events, step by step.
    Running,
    /// Every row was rendered and queued (or failed to render: see `failed`).
    Done,
    /// Stopped for good (`error` says why).
    Failed,
    /// Stopped by hand; what it queued stays queued.
    Cancelled,
}

impl BackfillStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BackfillStatus::Preparing => "preparing",
            BackfillStatus::Running => "running",
            BackfillStatus::Done => "done",
            BackfillStatus::Failed => "failed",
            BackfillStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> BackfillStatus {
        match text {
            "preparing" => BackfillStatus::Preparing,
            "running" => BackfillStatus::Running,
            "done" => BackfillStatus::Done,
            "cancelled" => BackfillStatus::Cancelled,
            _ => BackfillStatus::Failed,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Backfill {
    pub id: String,
    pub hook_id: String,
    /// The trigger whose body script renders each row.
    pub event_name: String,
    pub status: BackfillStatus,
    /// How many rows it has.
    pub total: u64,
    /// How many are handled (queued, or failed to render): its position.
    pub done: u64,
    /// Of `done`, the rows whose body script failed (recorded as script failures).
    pub failed: u64,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One step of a backfill: the events of rows `done..through` (positions), and the failures.
pub struct BackfillStep<'a> {
    pub backfill_id: &'a str,
    pub hook_id: &'a str,
    /// The position the step starts at: the step is stored only if the backfill is still there
    /// (another runner did not take the same rows meanwhile).
    pub from: u64,
    pub through: u64,
    pub events: &'a [NewEvent],
    pub failures: &'a [ScriptFailure],
}

const BACKFILL_COLUMNS: &str =
    "id, hook_id, event_name, status, total, done, failed, error, created_at, updated_at";

fn backfill_from_row(r: &Row<'_>) -> rusqlite::Result<Backfill> {
    Ok(Backfill {
        id: r.get(0)?,
        hook_id: r.get(1)?,
        event_name: r.get(2)?,
        status: BackfillStatus::parse(&r.get::<_, String>(3)?),
        total: r.get::<_, i64>(4)? as u64,
        done: r.get::<_, i64>(5)? as u64,
        failed: r.get::<_, i64>(6)? as u64,
        error: r.get(7)?,
        created_at: r.get(8)?,
        updated_at: r.get(9)?,
    })
}

impl Backfills for Sqlite {
    fn create_backfill(&self, hook_id: &str, event_name: &str, total: u64) -> Result<Backfill> {
        self.write(|tx| {
            let now = now_ms();
            let id = crate::ids::backfill_id();
            tx.execute(
                "INSERT INTO herald_backfills (id, hook_id, event_name, status, total, done, failed,
                                               created_at, updated_at)
                 VALUES (?1, ?2, ?3, 'preparing', ?4, 0, 0, ?5, ?5)",
                (&id, hook_id, event_name, total as i64, now),
            )?;
            let backfill = tx.query_row(
                &format!("SELECT {BACKFILL_COLUMNS} FROM herald_backfills WHERE id = ?1"),
                [&id],
                backfill_from_row,
            )?;
            Ok(backfill)
        })
    }

    fn add_backfill_rows(&self, id: &str, first_position: u64, row_ids: &[i64]) -> Result<()> {
        self.write(|tx| {
            let mut insert = tx.prepare_cached(
                "INSERT INTO herald_backfill_rows (backfill_id, position, row_id) VALUES (?1, ?2, ?3)",
            )?;
            for (offset, row_id) in row_ids.iter().enumerate() {
                insert.execute((id, (first_position + offset as u64) as i64, row_id))?;
            }
            Ok(())
        })
    }

    fn start_backfill(&self, id: &str) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE herald_backfills SET status = 'running', updated_at = ?2
                 WHERE id = ?1 AND status = 'preparing'",
                (id, now_ms()),
            )?;
            Ok(())
        })
    }

    fn get_backfill(&self, hook_id: &str, id: &str) -> Result<Option<Backfill>> {
        Ok(self
            .reader()
            .query_row(
                &format!(
                    "SELECT {BACKFILL_COLUMNS} FROM herald_backfills WHERE id = ?1 AND hook_id = ?2"
                ),
                (id, hook_id),
                backfill_from_row,
            )
            .optional()?)
    }

    fn hook_backfills(&self, hook_id: &str, limit: usize) -> Result<Vec<Backfill>> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {BACKFILL_COLUMNS} FROM herald_backfills WHERE hook_id = ?1
             ORDER BY created_at DESC, id DESC LIMIT ?2"
        ))?;
        let backfills = stmt
            .query_map((hook_id, limit as i64), backfill_from_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(backfills)
    }

    fn running_backfills(&self) -> Result<Vec<Backfill>> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {BACKFILL_COLUMNS} FROM herald_backfills WHERE status = 'running'
             ORDER BY created_at, id"
        ))?;
        let backfills = stmt
            .query_map([], backfill_from_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(backfills)
    }

    fn backfill_rows(&self, id: &str, from: u64, limit: usize) -> Result<Vec<i64>> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT row_id FROM herald_backfill_rows
             WHERE backfill_id = ?1 AND position >= ?2 ORDER BY position LIMIT ?3",
        )?;
        let rows = stmt
            .query_map((id, from as i64, limit as i64), |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    fn record_backfill_step(&self, step: &BackfillStep<'_>) -> Result<bool> {
        self.write(|tx| {
            let now = now_ms();
            let failed = step.failures.len() as i64;
            let moved = tx.execute(
                "UPDATE herald_backfills
                 SET done = ?3, failed = failed + ?4, updated_at = ?5,
                     status = CASE WHEN ?3 >= total THEN 'done' ELSE status END
                 WHERE id = ?1 AND status = 'running' AND done = ?2",
                (
                    step.backfill_id,
                    step.from as i64,
                    step.through as i64,
                    failed,
                    now,
                ),
            )?;
            if moved == 0 {
                return Ok(false);
            }
            let mut insert_event = tx.prepare_cached(
                "INSERT INTO herald_events (id, trigger_name, row_id, payload, change_id, script_hash,
                                            resource_name, event_type, company_id, project_id,
                                            created_at, backfill_id)
                 VALUES (?1, ?2, ?3, ?4, NULL, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            let mut insert_delivery = tx.prepare_cached(
                "INSERT INTO herald_deliveries (id, event_seq, hook_id, status, attempts,
                                                next_attempt_at, created_at, updated_at)
                 VALUES (?1, ?2, ?3, 'pending', 0, ?4, ?4, ?4)",
            )?;
            for event in step.events {
                insert_event.execute((
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
                    step.backfill_id,
                ))?;
                let event_seq = tx.last_insert_rowid();
                insert_delivery.execute((
                    crate::ids::message_id(),
                    event_seq,
                    step.hook_id,
                    now,
                ))?;
            }
            insert_failures(tx, step.failures)?;
            tx.execute(
                "DELETE FROM herald_backfill_rows WHERE backfill_id = ?1 AND position < ?2",
                (step.backfill_id, step.through as i64),
            )?;
            Ok(true)
        })
    }

    fn cancel_backfill(&self, hook_id: &str, id: &str) -> Result<bool> {
        self.write(|tx| {
            let cancelled = tx.execute(
                "UPDATE herald_backfills SET status = 'cancelled', updated_at = ?3
                 WHERE id = ?1 AND hook_id = ?2 AND status IN ('preparing', 'running')",
                (id, hook_id, now_ms()),
            )? > 0;
            tx.execute(
                "DELETE FROM herald_backfill_rows WHERE backfill_id = ?1 AND ?2",
                (id, cancelled),
            )?;
            Ok(cancelled)
        })
    }

    fn fail_backfill(&self, id: &str, error: &str) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE herald_backfills SET status = 'failed', error = ?2, updated_at = ?3
                 WHERE id = ?1 AND status IN ('preparing', 'running')",
                (id, error, now_ms()),
            )?;
            tx.execute(
                "DELETE FROM herald_backfill_rows WHERE backfill_id = ?1",
                [id],
            )?;
            Ok(())
        })
    }

    fn hook_waiting(&self, hook_id: &str) -> Result<u64> {
        let count: i64 = self
            .reader()
            .prepare_cached(
                "SELECT count(*) FROM herald_deliveries
                 WHERE hook_id = ?1 AND next_attempt_at IS NOT NULL",
            )?
            .query_row([hook_id], |r| r.get(0))?;
        Ok(count as u64)
    }
}
