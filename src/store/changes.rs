//! Datatracking in SQLite: the triggers that log every change of a tracked table, and the reading
//! of that log in commit order.
//!
//! Why triggers: they run inside the writer's own transaction, whatever the writer is (herald, the
//! application, the `sqlite3` shell), so a change is logged if and only if it commits. SQLite has one
//! writer at a time, so the log's ids (each the largest so far plus one) are in commit order. The
//! log never empties (see `commit_consumed_changes` and migration 6), so ids never start again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::change::{
    Action, Change, ChangeBatch, Consumed, Readable, TrackingProblem, UnreadableChange,
};
use super::outbox::{fan_out, NewEvent, Stored};
use super::script_failures::{insert_failures, ScriptFailure};
use super::{
    open_connection, quote_ident, quote_literal, ChangeFeed, ChangeLog, Result, Sqlite, StoreError,
    TrackingSql,
};
use crate::delivery::{DirectLease, Taken};

const TRIGGER_PREFIX: &str = "herald_track_";

fn trigger_name(table: &str, action: Action) -> String {
    format!("{TRIGGER_PREFIX}{table}_{}", action.key())
}

/// `json_array(NEW."id", ...)`: the row's values in the order of its layout's column names, which
/// the log keeps once per layout rather than in every row (see migration 6). Blobs become hex text:
/// JSON cannot hold blobs, and a tracking trigger must never make the application's write fail.
fn row_values(columns: &[String], side: &str) -> String {
    let values: Vec<String> = columns
        .iter()
        .map(|c| {
            let value = format!("{side}.{}", quote_ident(c));
            format!("CASE WHEN typeof({value}) = 'blob' THEN hex({value}) ELSE {value} END")
        })
        .collect();
    format!("json_array({})", values.join(", "))
}

fn trigger_sql(table: &str, columns: &[String], layout: i64, action: Action) -> String {
    let (event, row_id, row, old_row) = match action {
        Action::Insert => (
            "INSERT",
            "NEW.rowid",
            row_values(columns, "NEW"),
            "NULL".into(),
        ),
        Action::Update => (
            "UPDATE",
            "NEW.rowid",
            row_values(columns, "NEW"),
            row_values(columns, "OLD"),
        ),
        Action::Delete => (
            "DELETE",
            "OLD.rowid",
            row_values(columns, "OLD"),
            "NULL".into(),
        ),
    };
    format!(
        "CREATE TRIGGER {name} AFTER {event} ON {table_q} BEGIN \
         INSERT INTO herald_changes (table_name, row_id, action, layout, row_json, old_row_json) \
         VALUES ({table_lit}, {row_id}, {number}, {layout}, {row}, {old_row}); END",
        name = quote_ident(&trigger_name(table, action)),
        table_q = quote_ident(table),
        table_lit = quote_literal(table),
        number = action.number(),
    )
}

/// The id of `table`'s layout with these columns, recorded if new.
fn layout_id(tx: &Connection, table: &str, columns: &[String]) -> Result<i64> {
    let columns = serde_json::to_string(columns)?;
    tx.execute(
        "INSERT INTO herald_tracking_layouts (table_name, columns) VALUES (?1, ?2)
         ON CONFLICT (table_name, columns) DO NOTHING",
        (table, &columns),
    )?;
    Ok(tx.query_row(
        "SELECT id FROM herald_tracking_layouts WHERE table_name = ?1 AND columns = ?2",
        (table, &columns),
        |r| r.get(0),
    )?)
}

fn table_columns(conn: &Connection, table: &str) -> Result<Option<Vec<String>>> {
    let exists: Option<String> = conn
        .query_row(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name = ?1",
            [table],
            |r| r.get(0),
        )
        .optional()?;
    if exists.is_none() {
        return Ok(None);
    }
    let mut stmt = conn.prepare(&format!("PRAGMA table_info({})", quote_ident(table)))?;
    let columns = stmt
        .query_map([], |r| r.get::<_, String>(1))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Some(columns))
}

fn has_rowid(conn: &Connection, table: &str) -> bool {
    conn.prepare(&format!("SELECT rowid FROM {} LIMIT 0", quote_ident(table)))
        .is_ok()
}

/// What a sync of the triggers is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sync {
    /// The tracker or an API call looks: a table that lost its triggers is reported.
    Look,
    /// `migrate_application` dropped them itself.
    AfterMigration,
}

/// The key in `herald_state` of the tables the last sync gave triggers (a JSON list): a table on
/// it found without them lost them behind herald's back.
const TRACKED_TABLES_KEY: &str = "tracking.tables";

/// The tables to track and their columns now, and those that cannot be tracked.
struct WantedLayouts {
    tables: BTreeMap<String, Vec<String>>,
    problems: Vec<TrackingProblem>,
}

fn wanted_layouts(tx: &Connection, script_tables: &[String]) -> Result<WantedLayouts> {
    let mut names: BTreeSet<String> = script_tables.iter().cloned().collect();
    {
        let mut stmt = tx.prepare_cached(
            "SELECT DISTINCT substr(event_name, 1, instr(event_name, '.') - 1)
             FROM herald_hook_events WHERE instr(event_name, '.') > 0",
        )?;
        for table in stmt.query_map([], |r| r.get::<_, String>(0))? {
            names.insert(table?);
        }
    }
    let mut tables = BTreeMap::new();
    let mut problems = Vec::new();
    for table in names {
        let Some(columns) = table_columns(tx, &table)? else {
            problems.push(TrackingProblem {
                message: format!("table {table} does not exist in the database"),
                table,
            });
            continue;
        };
        if !has_rowid(tx, &table) {
            problems.push(TrackingProblem {
                message: format!("table {table} is WITHOUT ROWID; herald tracks rowid tables only"),
                table,
            });
            continue;
        }
        tables.insert(table, columns);
    }
    Ok(WantedLayouts { tables, problems })
}

fn tracking_trigger_names(tx: &Connection) -> Result<Vec<String>> {
    let mut stmt = tx.prepare(
        "SELECT name FROM sqlite_schema WHERE type = 'trigger' AND name LIKE 'herald\\_track\\_%' ESCAPE '\\'",
    )?;
    let names = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(names)
}

fn drop_tracking_triggers(tx: &Connection) -> Result<()> {
    for name in tracking_trigger_names(tx)? {
        tx.execute_batch(&format!("DROP TRIGGER IF EXISTS {}", quote_ident(&name)))?;
    }
    Ok(())
}

/// Makes herald's triggers match the tables to track; the tables, the problems, and whether any
/// trigger changed.
fn sync_triggers(
    tx: &rusqlite::Transaction<'_>,
    script_tables: &[String],
    sync: Sync,
) -> Result<(BTreeSet<String>, Vec<TrackingProblem>, bool)> {
    let WantedLayouts {
        tables,
        mut problems,
    } = wanted_layouts(tx, script_tables)?;
    let mut wanted: BTreeMap<String, String> = BTreeMap::new();
    for (table, columns) in &tables {
        let layout = layout_id(tx, table, columns)?;
        for action in Action::ALL {
            wanted.insert(
                trigger_name(table, action),
                trigger_sql(table, columns, layout, action),
            );
        }
    }
    let existing: Vec<(String, String)> = {
        let mut stmt = tx.prepare(
            "SELECT name, sql FROM sqlite_schema WHERE type = 'trigger' AND name LIKE 'herald\\_track\\_%' ESCAPE '\\'",
        )?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows
    };
    let mut lost = Vec::new();
    if sync == Sync::Look {
        let last: Option<String> = tx
            .query_row(
                "SELECT value FROM herald_state WHERE key = ?1",
                [TRACKED_TABLES_KEY],
                |r| r.get(0),
            )
            .optional()?;
        let last: Vec<String> = last
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        for table in last.iter().filter(|t| tables.contains_key(*t)) {
            let has_any = Action::ALL
                .iter()
                .any(|a| existing.iter().any(|(n, _)| *n == trigger_name(table, *a)));
            if !has_any {
                lost.push(TrackingProblem::lost_triggers(table));
            }
        }
    }
    insert_failures(
        tx,
        &lost
            .iter()
            .map(TrackingProblem::as_failure)
            .collect::<Vec<_>>(),
    )?;
    problems.extend(lost);
    let mut changed = false;
    for (name, sql) in &existing {
        if wanted.get(name) != Some(sql) {
            tx.execute_batch(&format!("DROP TRIGGER {}", quote_ident(name)))?;
            changed = true;
        }
    }
    for (name, sql) in &wanted {
        if !existing.iter().any(|(n, s)| n == name && s == sql) {
            tx.execute_batch(sql)?;
            changed = true;
        }
    }
    let tracked: Vec<&String> = tables.keys().collect();
    tx.execute(
        "INSERT INTO herald_state (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (TRACKED_TABLES_KEY, serde_json::to_string(&tracked)?),
    )?;
    Ok((tables.into_keys().collect(), problems, changed))
}

impl ChangeLog for Sqlite {
    /// Makes the tracking triggers match `tables`: creates or refreshes them (a table whose columns
    /// changed gets new triggers) and drops herald's triggers from tables no longer tracked. Returns
    /// the tables that cannot be tracked, with why; the others are tracked regardless.
    ///
    /// `script_tables` are the tables with a notification script; the tables of the resource events
    /// hooks select (`Deal.update`) are tracked as well, so ticking a grid cell needs no script.
    fn sync_tracking(&self, script_tables: &[String]) -> Result<Vec<TrackingProblem>> {
        let (tables, problems, changed) =
            self.write(|tx| sync_triggers(tx, script_tables, Sync::Look))?;
        if changed {
            tracing::info!(tables = ?tables, "tracking triggers updated");
        }
        Ok(problems)
    }

    /// Drops herald's triggers (they name every column: SQLite would refuse to drop one they
    /// read), runs `sql`, and makes the triggers again for the tables as the migration left them,
    /// in one `BEGIN IMMEDIATE` transaction: no other writer can commit between the three, so no
    /// change is written untracked, and the migration's own writes (a rebuild's copy) are not
    /// logged as changes.
    fn migrate_application(
        &self,
        sql: &str,
        script_tables: &[String],
    ) -> Result<Vec<TrackingProblem>> {
        let (tables, problems, _) = self.write(|tx| {
            drop_tracking_triggers(tx)?;
            // A rebuild drops and renames tables that others reference; checked at commit.
            tx.execute_batch("PRAGMA defer_foreign_keys = ON")?;
            tx.execute_batch(sql).map_err(|e| StoreError::Schema {
                file: "the migration".into(),
                message: e.to_string(),
            })?;
            sync_triggers(tx, script_tables, Sync::AfterMigration)
        })?;
        tracing::info!(tables = ?tables, "migration applied; tracking triggers made for the new layouts");
        Ok(problems)
    }

    /// Runs `sql` in a transaction that is rolled back, and gives what a migration tool that runs
    /// its own SQL must run around it, in its transaction, for the tables as `sql` leaves them.
    fn tracking_sql_around(&self, sql: &str, script_tables: &[String]) -> Result<TrackingSql> {
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let before = tracking_trigger_names(&tx)?;
        drop_tracking_triggers(&tx)?;
        tx.execute_batch("PRAGMA defer_foreign_keys = ON")?;
        tx.execute_batch(sql).map_err(|e| StoreError::Schema {
            file: "the migration".into(),
            message: e.to_string(),
        })?;
        let layouts = wanted_layouts(&tx, script_tables)?;
        tx.rollback()?;
        drop(conn);
        // The layouts are recorded for good (a layout nobody uses costs a row): the printed
        // triggers name them by id.
        let after = self.write(|tx| {
            let mut statements = Vec::new();
            for (table, columns) in &layouts.tables {
                let layout = layout_id(tx, table, columns)?;
                for action in Action::ALL {
                    statements.push(format!("{};", trigger_sql(table, columns, layout, action)));
                }
            }
            Ok(statements)
        })?;
        Ok(TrackingSql {
            before: before
                .iter()
                .map(|name| format!("DROP TRIGGER IF EXISTS {};", quote_ident(name)))
                .collect(),
            after,
            problems: layouts.problems,
        })
    }

    /// The application's tables that can be tracked (rowid tables, not SQLite's or herald's own):
    /// the resources of the grid.
    fn application_tables(&self) -> Result<Vec<String>> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT name FROM sqlite_schema WHERE type = 'table'
               AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE 'herald\\_%' ESCAPE '\\'
             ORDER BY name",
        )?;
        let names = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(names
            .into_iter()
            .filter(|table| has_rowid(&conn, table))
            .collect())
    }

    /// The newest row of an application table (by rowid) as a JSON object, with its rowid: what a
    /// resource event's sample shows. `None` when the table is empty or is not an application table.
    fn newest_row(&self, table: &str) -> Result<Option<(i64, serde_json::Value)>> {
        Ok(self
            .application_rows(table, "ORDER BY rowid DESC LIMIT 1", &[])?
            .into_iter()
            .next())
    }

    fn rows_by_id(&self, table: &str, ids: &[i64]) -> Result<Vec<(i64, serde_json::Value)>> {
        let ids = serde_json::to_string(ids).expect("integers serialize");
        self.application_rows(
            table,
            "WHERE rowid IN (SELECT value FROM json_each(?1))",
            &[&ids],
        )
    }

    /// Stores what a batch of changes produced and moves the consumer's position past them, in one
    /// transaction: after a crash the batch is either wholly consumed or not at all, so every change
    /// turns into its events exactly once. With `lease`, the fresh deliveries the worker has room
    /// for are leased to it in the same transaction and returned, for it to send at once.
    fn commit_consumed_changes(
        &self,
        consumed: &Consumed,
        events: &[NewEvent],
        failures: &[ScriptFailure],
        lease: Option<&DirectLease<'_>>,
    ) -> Result<Stored> {
        let mut taken = lease.map(|l| (Taken::new(l.capacity), l.lease_ms));
        let (from_position, to_position) = (consumed.from_position, consumed.to_position);
        let stored = self.write_noting("storing events", |tx| {
            let moved = tx.execute(
                "UPDATE herald_state SET value = ?2 WHERE key = 'tracking.position' AND value = ?1",
                (from_position, to_position),
            )?;
            if moved != 1 {
                return Err(StoreError::ConcurrentConsumer);
            }
            let stored = fan_out(
                tx,
                self.secrets(),
                events,
                taken.as_mut().map(|(taken, lease_ms)| (taken, *lease_ms)),
            )?;
            insert_failures(tx, failures)?;
            // The log has no AUTOINCREMENT (migration 6): SQLite gives a new change the largest id
            // plus one, and the log's own trigger keeps its newest row whatever deletes, so new
            // ids stay above the position. Only a position moved past every logged change needs a
            // row to stand in for it, put in first so that the rows below it can go.
            tx.prepare_cached(
                "INSERT INTO herald_changes (id, table_name, row_id, action, row_json, changed_at)
                 SELECT ?1, '', 0, 0, '{}', 0
                 WHERE ?1 > coalesce((SELECT max(id) FROM herald_changes), 0)",
            )?
            .execute([to_position])?;
            tx.prepare_cached("DELETE FROM herald_changes WHERE id <= ?1")?
                .execute([to_position])?;
            Ok(stored)
        })?;
        if let Some((taken, _)) = taken {
            taken.keep();
        }
        Ok(stored)
    }

    /// A connection of its own for the change-log consumer.
    fn change_feed(&self) -> Result<Box<dyn ChangeFeed>> {
        Ok(Box::new(ChangeReader::open(self.path())?))
    }
}

/// The consumer's own connection: cheap change detection and batched reads of the log.
pub struct ChangeReader {
    conn: Connection,
    /// Column names by layout id. Layouts never change once recorded, so they are read once.
    layouts: HashMap<i64, Arc<[String]>>,
    /// `PRAGMA data_version` at the last look: it moves whenever another connection commits.
    seen_data_version: Option<i64>,
}

impl ChangeReader {
    pub(super) fn open(path: &Path) -> Result<ChangeReader> {
        let conn = open_connection(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        Ok(ChangeReader {
            conn,
            layouts: HashMap::new(),
            seen_data_version: None,
        })
    }

    /// A layout's column names; the inner error says why a layout cannot be used (missing, or not
    /// a JSON list of names), the outer one that the database could not be read.
    fn layout(&mut self, id: i64) -> Result<Readable<Arc<[String]>>> {
        if let Some(columns) = self.layouts.get(&id) {
            return Ok(Ok(columns.clone()));
        }
        let text: Option<String> = self
            .conn
            .query_row(
                "SELECT columns FROM herald_tracking_layouts WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()?;
        let Some(text) = text else {
            return Ok(Err(format!("its layout {id} is not recorded")));
        };
        let columns: Arc<[String]> = match serde_json::from_str::<Vec<String>>(&text) {
            Ok(columns) => columns.into(),
            Err(e) => return Ok(Err(format!("its layout {id} is not a list of names: {e}"))),
        };
        self.layouts.insert(id, columns.clone());
        Ok(Ok(columns))
    }

    /// A logged row: a JSON array in its layout's column order, or (logged before migration 6)
    /// a JSON object. The inner error says why the row cannot be read.
    fn logged_row(
        &mut self,
        layout: Option<i64>,
        text: &str,
    ) -> Result<Readable<serde_json::Value>> {
        let Some(layout) = layout else {
            return Ok(serde_json::from_str(text).map_err(|e| format!("its row is not JSON: {e}")));
        };
        let columns = match self.layout(layout)? {
            Ok(columns) => columns,
            Err(reason) => return Ok(Err(reason)),
        };
        let values: Vec<serde_json::Value> = match serde_json::from_str(text) {
            Ok(values) => values,
            Err(e) => return Ok(Err(format!("its row is not a JSON list of values: {e}"))),
        };
        if values.len() != columns.len() {
            return Ok(Err(format!(
                "{} values for the {} columns of layout {layout}",
                values.len(),
                columns.len()
            )));
        }
        Ok(Ok(serde_json::Value::Object(
            columns.iter().cloned().zip(values).collect(),
        )))
    }

    /// A change's row and row before, or why they cannot be read.
    fn logged_rows(
        &mut self,
        action: Action,
        layout: Option<i64>,
        row_json: &str,
        old_row_json: Option<String>,
    ) -> Result<Readable<(serde_json::Value, Option<serde_json::Value>)>> {
        let row = match self.logged_row(layout, row_json)? {
            Ok(row) => row,
            Err(reason) => return Ok(Err(reason)),
        };
        let old_row = match (action, old_row_json) {
            (Action::Delete, _) => Some(row.clone()),
            (_, Some(text)) => match self.logged_row(layout, &text)? {
                Ok(old_row) => Some(old_row),
                Err(reason) => return Ok(Err(format!("{reason} (the row before the change)"))),
            },
            (_, None) => None,
        };
        Ok(Ok((row, old_row)))
    }
}

impl ChangeReader {
    /// Where the consumer stands: the id of the last change whose events are stored.
    fn position(&self) -> Result<i64> {
        Ok(self.conn.query_row(
            "SELECT value FROM herald_state WHERE key = 'tracking.position'",
            [],
            |r| r.get(0),
        )?)
    }

    /// The next `limit` logged rows after `position`, oldest first, as changes or, where a row
    /// cannot be read, as what is wrong with it. An error means the log itself could not be read.
    fn read_after(&mut self, position: i64, limit: usize) -> Result<ChangeBatch> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, table_name, row_id, action, row_json, old_row_json, changed_at, layout
             FROM herald_changes WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let raw = stmt
            .query_map((position, limit as i64), |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, i64>(6)?,
                    r.get::<_, Option<i64>>(7)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        drop(stmt);
        let mut batch = ChangeBatch {
            changes: Vec::with_capacity(raw.len()),
            ..ChangeBatch::default()
        };
        for (id, table, row_id, action, row_json, old_row_json, changed_at, layout) in raw {
            batch.through = Some(id);
            let read = match Action::from_number(action) {
                None => Err(format!("its action {action} is unknown")),
                Some(action) => self
                    .logged_rows(action, layout, &row_json, old_row_json)?
                    .map(|(row, old_row)| (action, row, old_row)),
            };
            match read {
                Ok((action, row, old_row)) => batch.changes.push(Change {
                    id,
                    table,
                    row_id,
                    action,
                    row,
                    old_row,
                    changed_at,
                }),
                Err(reason) => batch.unreadable.push(UnreadableChange {
                    id,
                    table,
                    row_id,
                    reason,
                }),
            }
        }
        if let Some(through) = batch.through {
            batch.consumed = Consumed::positions(position, through);
        }
        Ok(batch)
    }
}

impl ChangeFeed for ChangeReader {
    /// Another connection's commit moves `PRAGMA data_version`: one look at the WAL index, no
    /// file read, so the tracker can look every millisecond.
    fn wait_for_changes(&mut self, poll: std::time::Duration) -> Result<bool> {
        let version: i64 = self
            .conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))?;
        if self.seen_data_version == Some(version) {
            std::thread::sleep(poll);
            return Ok(false);
        }
        self.seen_data_version = Some(version);
        Ok(true)
    }

    /// Changes whenever any connection changes the schema (a column added to a tracked table).
    fn schema_version(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("PRAGMA schema_version", [], |r| r.get(0))?)
    }

    /// The next `limit` changes after the consumer's position.
    fn read_next(&mut self, limit: usize) -> Result<ChangeBatch> {
        let position = self.position()?;
        self.read_after(position, limit)
    }
}

impl Sqlite {
    /// Rows of an application table as JSON objects (blobs in hex, as the tracking triggers
    /// write them), with their rowids; `clause` filters and orders them. None for a table that is
    /// SQLite's, herald's, or not there.
    fn application_rows(
        &self,
        table: &str,
        clause: &str,
        params: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<(i64, serde_json::Value)>> {
        if table.starts_with("herald_") || table.starts_with("sqlite_") {
            return Ok(Vec::new());
        }
        let conn = self.reader();
        let Some(columns) = table_columns(&conn, table)? else {
            return Ok(Vec::new());
        };
        let sql = format!(
            "SELECT rowid, {} FROM {} {clause}",
            columns
                .iter()
                .map(|c| quote_ident(c))
                .collect::<Vec<_>>()
                .join(", "),
            quote_ident(table)
        );
        let mut statement = conn.prepare(&sql)?;
        let rows = statement
            .query_map(params, |r| {
                let mut object = serde_json::Map::new();
                for (i, name) in columns.iter().enumerate() {
                    let value = match r.get_ref(i + 1)? {
                        rusqlite::types::ValueRef::Null => serde_json::Value::Null,
                        rusqlite::types::ValueRef::Integer(n) => n.into(),
                        rusqlite::types::ValueRef::Real(x) => x.into(),
                        rusqlite::types::ValueRef::Text(t) => {
                            String::from_utf8_lossy(t).into_owned().into()
                        }
                        // Hex, as the tracking triggers write blobs.
                        rusqlite::types::ValueRef::Blob(b) => b
                            .iter()
                            .map(|byte| format!("{byte:02X}"))
                            .collect::<String>()
                            .into(),
                    };
                    object.insert(name.clone(), value);
                }
                Ok((r.get::<_, i64>(0)?, serde_json::Value::Object(object)))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn store_with_deal() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        store
            .apply_schema(
                "schema.sql",
                "CREATE TABLE Deal (id INTEGER PRIMARY KEY, title TEXT, photo BLOB)",
            )
            .unwrap();
        (dir, store)
    }

    /// The first rows of the change log, read by a fresh reader.
    fn logged_changes(dir: &tempfile::TempDir) -> ChangeBatch {
        reader(dir).read_after(0, 10).unwrap()
    }

    /// A reader of the log of `t.db` in `dir`.
    fn reader(dir: &tempfile::TempDir) -> ChangeReader {
        ChangeReader::open(&dir.path().join("t.db")).unwrap()
    }

    /// The `Deal` table, tracked, and the application's own connection to it.
    fn tracked_deal() -> (tempfile::TempDir, Store, Connection) {
        let (dir, store) = store_with_deal();
        store.sync_tracking(&["Deal".into()]).unwrap();
        let app = Connection::open(dir.path().join("t.db")).unwrap();
        (dir, store, app)
    }

    #[test]
    fn triggers_log_each_action_with_the_row_before_and_after() {
        let (dir, store) = store_with_deal();
        assert!(store.sync_tracking(&["Deal".into()]).unwrap().is_empty());
        let app = Connection::open(dir.path().join("t.db")).unwrap();
        app.execute_batch(
            "INSERT INTO Deal VALUES (7, 'Roof', x'00ff');
             UPDATE Deal SET title = 'Roof and walls' WHERE id = 7;
             DELETE FROM Deal WHERE id = 7;",
        )
        .unwrap();
        let changes = logged_changes(&dir).changes;
        let actions: Vec<Action> = changes.iter().map(|c| c.action).collect();
        assert_eq!(actions, [Action::Insert, Action::Update, Action::Delete]);
        assert_eq!(changes[0].row["photo"], "00FF");
        assert_eq!(changes[0].old_row, None);
        assert_eq!(changes[1].row["title"], "Roof and walls");
        assert_eq!(changes[1].old_row.as_ref().unwrap()["title"], "Roof");
        assert_eq!(changes[2].row["title"], "Roof and walls");
        assert!(changes.iter().all(|c| c.row_id == 7 && c.table == "Deal"));
    }

    #[test]
    fn untracking_drops_the_triggers_and_missing_tables_are_reported() {
        let (dir, store) = store_with_deal();
        let problems = store
            .sync_tracking(&["Deal".into(), "Nope".into()])
            .unwrap();
        assert_eq!(problems.len(), 1);
        assert_eq!(
            problems[0].message,
            "table Nope does not exist in the database"
        );
        store.sync_tracking(&[]).unwrap();
        let app = Connection::open(dir.path().join("t.db")).unwrap();
        app.execute("INSERT INTO Deal (title) VALUES ('x')", [])
            .unwrap();
        assert!(logged_changes(&dir).is_empty());
    }

    #[test]
    fn a_new_column_refreshes_the_triggers() {
        let (dir, store, app) = tracked_deal();
        app.execute_batch("ALTER TABLE Deal ADD COLUMN stage TEXT")
            .unwrap();
        store.sync_tracking(&["Deal".into()]).unwrap();
        app.execute("INSERT INTO Deal (title, stage) VALUES ('x', 'won')", [])
            .unwrap();
        let changes = logged_changes(&dir).changes;
        assert_eq!(changes[0].row["stage"], "won");
    }

    #[test]
    fn consumed_changes_never_let_new_ids_fall_behind_the_position() {
        let (dir, store, app) = tracked_deal();
        app.execute_batch("INSERT INTO Deal (title) VALUES ('a'), ('b')")
            .unwrap();
        let mut reader = reader(&dir);
        let first = reader.read_after(0, 10).unwrap().changes;
        assert_eq!(first.len(), 2);
        store
            .commit_consumed_changes(&Consumed::positions(0, 2), &[], &[], None)
            .unwrap();
        app.execute("INSERT INTO Deal (title) VALUES ('c')", [])
            .unwrap();
        let next = reader.read_after(2, 10).unwrap().changes;
        assert_eq!(next.len(), 1);
        assert_eq!((next[0].id, &next[0].row["title"]), (3, &"c".into()));
        // A position moved past every logged change (nothing to keep) still holds.
        store
            .commit_consumed_changes(&Consumed::positions(2, 40), &[], &[], None)
            .unwrap();
        app.execute("INSERT INTO Deal (title) VALUES ('d')", [])
            .unwrap();
        let next = reader.read_after(40, 10).unwrap().changes;
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].id, 41);
        let logged: i64 = app
            .query_row("SELECT count(*) FROM herald_changes", [], |r| r.get(0))
            .unwrap();
        assert_eq!(logged, 2, "the change at the position and the new one");
    }

    #[test]
    fn deleting_the_whole_log_by_hand_keeps_its_newest_row_so_ids_go_on() {
        let (_dir, _store, app) = tracked_deal();
        app.execute_batch(
            "INSERT INTO Deal (title) VALUES ('a'), ('b'), ('c');
             DELETE FROM herald_changes;
             INSERT INTO Deal (title) VALUES ('d');",
        )
        .unwrap();
        let ids: Vec<i64> = app
            .prepare("SELECT id FROM herald_changes ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(ids, [3, 4]);
    }

    #[test]
    fn a_table_layout_is_recorded_once_and_names_the_values() {
        let (dir, store, app) = tracked_deal();
        store.sync_tracking(&["Deal".into()]).unwrap();
        let layouts: i64 = app
            .query_row("SELECT count(*) FROM herald_tracking_layouts", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(layouts, 1);
        app.execute("INSERT INTO Deal VALUES (1, 'it''s \"quoted\"', NULL)", [])
            .unwrap();
        let logged: String = app
            .query_row("SELECT row_json FROM herald_changes", [], |r| r.get(0))
            .unwrap();
        assert_eq!(logged, r#"[1,"it's \"quoted\"",null]"#);
        let changes = logged_changes(&dir).changes;
        assert_eq!(
            changes[0].row,
            serde_json::json!({"id": 1, "title": "it's \"quoted\"", "photo": null})
        );
    }

    #[test]
    fn unreadable_rows_are_reported_with_why_and_read_past() {
        let (dir, _store, app) = tracked_deal();
        app.execute_batch(
            "INSERT INTO Deal VALUES (1, 'a', NULL);
             INSERT INTO herald_changes (table_name, row_id, action, row_json, layout)
                 VALUES ('Deal', 2, 1, '[2, \"too few\"]', 1),
                        ('Deal', 3, 1, '[3, \"b\", null]', 999),
                        ('Deal', 4, 1, 'not json', 1),
                        ('Deal', 5, 7, '[5, \"c\", null]', 1),
                        ('Deal', 6, 2, '[6, \"d\", null]', 1);
             INSERT INTO Deal VALUES (7, 'e', NULL);",
        )
        .unwrap();
        let batch = logged_changes(&dir);
        let read: Vec<i64> = batch.changes.iter().map(|c| c.row_id).collect();
        // An update logged without its row before is read as it stands.
        assert_eq!(read, [1, 6, 7]);
        let reasons: Vec<(i64, &str)> = batch
            .unreadable
            .iter()
            .map(|u| (u.row_id, u.reason.as_str()))
            .collect();
        assert_eq!(reasons[0], (2, "2 values for the 3 columns of layout 1"));
        assert_eq!(reasons[1], (3, "its layout 999 is not recorded"));
        assert_eq!(reasons[2].0, 4);
        assert!(reasons[2]
            .1
            .starts_with("its row is not a JSON list of values"));
        assert_eq!(reasons[3], (5, "its action 7 is unknown"));
        assert_eq!(reasons.len(), 4, "{reasons:?}");
        assert_eq!(batch.len(), 7);
        assert_eq!(batch.through, Some(7));
    }

    #[test]
    fn the_position_moves_only_from_where_it_stood() {
        let (dir, store) = store_with_deal();
        store
            .commit_consumed_changes(&Consumed::positions(0, 5), &[], &[], None)
            .unwrap();
        assert!(matches!(
            store.commit_consumed_changes(&Consumed::positions(0, 9), &[], &[], None),
            Err(StoreError::ConcurrentConsumer)
        ));
        assert_eq!(reader(&dir).position().unwrap(), 5);
    }
}
