//! Datatracking on PostgreSQL: a trigger per tracked table calls `herald_track()` (see
//! `migrations.rs`), which logs each changed row as JSON inside the writer's transaction and wakes
//! herald with `NOTIFY`.
//!
//! Why consumption deletes: PostgreSQL's identity values are taken when a row is inserted, not
//! when its transaction commits, so a transaction holding a lower id can commit after others with
//! higher ids. A consumer that kept a position ("everything up to id N is done") would skip such a
//! late change for good. herald instead reads whatever the log holds, oldest id first, and deletes
//! exactly the rows it read in the transaction that stores their events: a late change is simply
//! read by the next batch. Nothing is ever skipped, and a change's events are stored once.
//!
//! Order: changes to one row are logged in commit order (the second writer waits for the first's
//! row lock, so it takes its id after the first committed). Across rows, changes are consumed in
//! id order among those committed when a batch is read: a change that commits late comes in a
//! later batch, after changes of other rows that committed before it.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;
use postgres::Client;

use super::connection::{PgConn, Queries, Tx};

use super::outbox::{db_now, fan_out};
use super::{
    changes_channel, describe, quote_ident, quote_literal, Postgres, Result, StoreError, DB_NOW_MS,
};
use crate::delivery::{DirectLease, Taken};
use crate::store::change::{
    Action, Change, ChangeBatch, Consumed, TrackingProblem, UnreadableChange,
};
use crate::store::{ChangeFeed, ChangeLog, NewEvent, ScriptFailure, Stored, TrackingSql};

/// The name of herald's trigger on every tracked table.
const TRIGGER: &str = "herald_track";

/// How long the feed waits for a notification in one call, so that the tracker can see a stop.
const WAIT_SLICE: Duration = Duration::from_millis(100);

/// Without any notification, the feed reads the log anyway this often: a lost notification (a
/// connection that dropped and came back) delays a change by this much at most.
const BACKSTOP: Duration = Duration::from_secs(1);

/// A table herald tracks, as PostgreSQL knows it.
struct TrackedTable {
    /// The name the scripts and hooks use, which the log records.
    name: String,
    /// The single-column integer primary key: the row id scripts see.
    key: String,
    oid: u32,
}

impl ChangeLog for Postgres {
    /// Makes herald's triggers match `script_tables` and the tables of the resource events some
    /// hook selects: creates the missing ones, drops those of tables no longer tracked. A table is
    /// found by its name exactly as written (`"Deal"`), on the `search_path`.
    fn sync_tracking(&self, script_tables: &[String]) -> Result<Vec<TrackingProblem>> {
        let (tables, problems, changed) =
            self.write(|tx| self.sync_triggers(tx, script_tables, true))?;
        if changed {
            tracing::info!(tables = ?tables, "tracking triggers updated");
        }
        // Tables made since the last sync become readable to scripts too.
        self.grant_reads_to_scripts()?;
        Ok(problems)
    }

    /// herald's triggers log `to_jsonb` of the row and name no column, so they block no
    /// migration; a table the migration rebuilds (creates anew, copies, drops the old one) gets
    /// its trigger in the same transaction.
    fn migrate_application(
        &self,
        sql: &str,
        script_tables: &[String],
    ) -> Result<Vec<TrackingProblem>> {
        let (tables, problems, _) = self.write(|tx| {
            tx.batch_execute(sql).map_err(|e| StoreError::Schema {
                file: "the migration".into(),
                message: describe(&e),
            })?;
            self.sync_triggers(tx, script_tables, false)
        })?;
        tracing::info!(tables = ?tables, "migration applied; tracking triggers in line");
        self.grant_reads_to_scripts()?;
        Ok(problems)
    }

    fn tracking_sql_around(&self, sql: &str, script_tables: &[String]) -> Result<TrackingSql> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        tx.batch_execute(sql).map_err(|e| StoreError::Schema {
            file: "the migration".into(),
            message: describe(&e),
        })?;
        let (wanted, problems) = self.wanted_tables(&mut tx, script_tables)?;
        let mut after = Vec::new();
        for table in &wanted {
            after.push(format!(
                "CREATE OR REPLACE TRIGGER {TRIGGER} AFTER INSERT OR UPDATE OR DELETE ON {} \
                 FOR EACH ROW EXECUTE FUNCTION {}.herald_track({}, {});",
                qualified_by_oid(&mut tx, table.oid)?,
                quote_ident(self.schema()),
                quote_literal(&table.name),
                quote_literal(&table.key),
            ));
        }
        tx.rollback()?;
        Ok(TrackingSql {
            before: Vec::new(),
            after,
            problems,
        })
    }

    /// The application's tables with a single-column integer primary key (the row id), on the
    /// `search_path` but outside herald's schema: the resources of the grid.
    fn application_tables(&self) -> Result<Vec<String>> {
        let rows = self.client()?.query(
            "SELECT c.relname FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary AND i.indnatts = 1
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
             WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY(current_schemas(false))
               AND n.nspname <> $1
               AND a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype)
               AND c.relname NOT LIKE 'herald\\_%'
             ORDER BY c.relname",
            &[&self.schema()],
        )?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// The row with the highest id of an application table, as the trigger would log it.
    fn newest_row(&self, table: &str) -> Result<Option<(i64, serde_json::Value)>> {
        if table.starts_with("herald_") {
            return Ok(None);
        }
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        let found = match tracked_table(&mut tx, table)? {
            Ok(found) => found,
            Err(_) => return Ok(None),
        };
        let sql = format!(
            "SELECT {key}::bigint, to_jsonb(t) FROM {table} t ORDER BY {key} DESC LIMIT 1",
            key = quote_ident(&found.key),
            table = qualified_by_oid(&mut tx, found.oid)?,
        );
        let row = tx.query_opt(&sql, &[])?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    fn rows_by_id(&self, table: &str, ids: &[i64]) -> Result<Vec<(i64, serde_json::Value)>> {
        if table.starts_with("herald_") {
            return Ok(Vec::new());
        }
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        let found = match tracked_table(&mut tx, table)? {
            Ok(found) => found,
            Err(_) => return Ok(Vec::new()),
        };
        let sql = format!(
            "SELECT {key}::bigint, to_jsonb(t) FROM {table} t WHERE {key} = ANY($1::bigint[])",
            key = quote_ident(&found.key),
            table = qualified_by_oid(&mut tx, found.oid)?,
        );
        let rows = tx.query(&sql, &[&ids])?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Stores what a batch produced and deletes the changes it read, in one transaction. If any
    /// of them is gone already, another consumer got there first: nothing is stored.
    fn commit_consumed_changes(
        &self,
        consumed: &Consumed,
        events: &[NewEvent],
        failures: &[ScriptFailure],
        lease: Option<&DirectLease<'_>>,
    ) -> Result<Stored> {
        let mut taken = lease.map(|l| (Taken::new(l.capacity), l.lease_ms));
        let stored = self.write_noting("storing events", |tx| {
            let now = if consumed.ids.is_empty() {
                db_now(tx)?
            } else {
                // The clock comes with the delete: one round trip fewer per batch.
                let row = tx.query_one(
                    &format!(
                        "WITH gone AS (DELETE FROM herald_changes WHERE id = ANY($1) RETURNING 1)
                         SELECT count(*), {DB_NOW_MS} FROM gone"
                    ),
                    &[&consumed.ids],
                )?;
                let deleted: i64 = row.get(0);
                if deleted as usize != consumed.ids.len() {
                    return Err(StoreError::ConcurrentConsumer);
                }
                row.get(1)
            };
            let stored = fan_out(
                self,
                tx,
                now,
                events,
                taken.as_mut().map(|(taken, lease_ms)| (taken, *lease_ms)),
            )?;
            super::outbox::insert_failures(tx, failures)?;
            Ok(stored)
        })?;
        if let Some((taken, _)) = taken {
            taken.keep();
        }
        Ok(stored)
    }

    fn change_feed(&self) -> Result<Box<dyn ChangeFeed>> {
        Ok(Box::new(ChangeListener {
            store: self.clone(),
            client: None,
            last_read: None,
            triggers_seen: std::cell::Cell::new(None),
        }))
    }
}

/// How herald's trigger on a table is called: the name to log and the key column.
fn trigger_args(name: &str, key: &str) -> Vec<u8> {
    // pg_trigger.tgargs: each argument followed by a NUL byte.
    let mut args = Vec::with_capacity(name.len() + key.len() + 2);
    args.extend_from_slice(name.as_bytes());
    args.push(0);
    args.extend_from_slice(key.as_bytes());
    args.push(0);
    args
}

/// `schema.table`, quoted, of a table by its oid.
fn qualified_by_oid(tx: &mut Tx<'_>, oid: u32) -> Result<String> {
    let row = tx.query_one(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.oid = $1",
        &[&oid],
    )?;
    Ok(format!(
        "{}.{}",
        quote_ident(row.get(0)),
        quote_ident(row.get(1))
    ))
}

/// The table herald would track under `name`, or why it cannot.
fn tracked_table(tx: &mut Tx<'_>, name: &str) -> Result<std::result::Result<TrackedTable, String>> {
    let oid: Option<u32> = tx
        .query_one("SELECT to_regclass($1)::oid", &[&quote_ident(name)])?
        .get(0);
    let Some(oid) = oid else {
        return Ok(Err(format!("table {name} does not exist in the database")));
    };
    let key: Option<(String, String)> = tx
        .query_opt(
            "SELECT a.attname::text, format_type(a.atttypid, NULL)
             FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
             WHERE i.indrelid = $1 AND i.indisprimary AND i.indnatts = 1",
            &[&oid],
        )?
        .map(|r| (r.get(0), r.get(1)));
    match key {
        Some((key, kind)) if ["smallint", "integer", "bigint"].contains(&kind.as_str()) => {
            Ok(Ok(TrackedTable {
                name: name.to_owned(),
                key,
                oid,
            }))
        }
        _ => Ok(Err(format!(
            "table {name} has no primary key of one integer column; herald names rows by it"
        ))),
    }
}

/// The tracker's connection to the log: it listens for the triggers' notifications and reads the
/// log in id order. It connects on first use and again after a failure.
struct ChangeListener {
    store: Postgres,
    client: Option<PgConn>,
    /// When the log was last read: the backstop reads again after `BACKSTOP` without a word.
    last_read: Option<Instant>,
    /// herald's triggers as last counted (`schema_version`), and when.
    triggers_seen: std::cell::Cell<Option<(Instant, i64)>>,
}

/// How often the tracker's look at herald's triggers goes to the catalogue.
const TRIGGERS_LOOK: Duration = Duration::from_secs(1);

impl ChangeListener {
    fn client(&mut self) -> Result<&mut Client> {
        if self.client.is_none() {
            let mut client = self.store.dedicated_client()?;
            client.batch_execute(&format!(
                "LISTEN {}",
                quote_ident(&changes_channel(self.store.schema()))
            ))?;
            self.client = Some(client);
            // What was logged while no one listened is read at once.
            self.last_read = None;
        }
        Ok(self.client.as_mut().expect("connected above"))
    }

    /// Drops a connection that failed, so that the next call connects again.
    fn checked<T>(&mut self, result: Result<T>) -> Result<T> {
        if result.is_err() && self.client.as_ref().is_none_or(|c| c.is_closed()) {
            self.client = None;
        }
        if let Err(StoreError::Postgres(e)) = &result {
            if e.is_closed() || e.as_db_error().is_none() {
                self.client = None;
            }
        }
        result
    }
}

impl ChangeListener {
    /// The columns of each table whose numbers are floats (`real`, `double precision`,
    /// `numeric`), read anew for every batch so that a column added meanwhile counts.
    fn float_columns(
        &mut self,
        tables: &BTreeSet<String>,
    ) -> Result<std::collections::HashMap<String, BTreeSet<String>>> {
        let mut floats = std::collections::HashMap::new();
        for table in tables {
            let read = (|| {
                let client = self.client()?;
                Ok(client.query(
                    "SELECT a.attname::text FROM pg_attribute a
                     WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
                       AND a.atttypid IN ('float4'::regtype, 'float8'::regtype, 'numeric'::regtype)",
                    &[&quote_ident(table)],
                )?)
            })();
            let columns: BTreeSet<String> = self.checked(read)?.iter().map(|r| r.get(0)).collect();
            if !columns.is_empty() {
                floats.insert(table.clone(), columns);
            }
        }
        Ok(floats)
    }
}

/// `to_jsonb` writes `250000` for a `double precision` 250000: scripts would see an integer where
/// SQLite gives them a float. The table's float columns are made floats again.
fn as_floats(row: &mut serde_json::Value, columns: &BTreeSet<String>) {
    let Some(object) = row.as_object_mut() else {
        return;
    };
    for column in columns {
        if let Some(value) = object.get_mut(column) {
            if let Some(x) = value.as_f64().filter(|_| !value.is_f64()) {
                *value = serde_json::Value::from(x);
            }
        }
    }
}

impl ChangeFeed for ChangeListener {
    fn wait_for_changes(&mut self, _poll: Duration) -> Result<bool> {
        if self.last_read.is_none_or(|at| at.elapsed() >= BACKSTOP) {
            self.last_read = Some(Instant::now());
            // Connects (and listens) if need be: what came before is read now.
            let connected = self.client().map(|_| ());
            self.checked(connected)?;
            return Ok(true);
        }
        let waited = (|| {
            let client = self.client()?;
            let mut notifications = client.notifications();
            let woken = notifications.timeout_iter(WAIT_SLICE).next()?.is_some();
            // Many commits, one read.
            while notifications.iter().next()?.is_some() {}
            Ok(woken)
        })();
        let woken = self.checked(waited)?;
        if woken {
            self.last_read = Some(Instant::now());
        }
        Ok(woken)
    }

    /// The triggers log whole rows whatever the columns, so a schema change needs nothing.
    /// herald's triggers name no column, so a column added or dropped needs nothing; what needs a
    /// sync is a tracked table that lost its trigger (rebuilt, or the trigger dropped): this
    /// number (the triggers' count and tables) changes then. Counted at most once a second.
    fn schema_version(&self) -> Result<i64> {
        if let Some((at, seen)) = self.triggers_seen.get() {
            if at.elapsed() < TRIGGERS_LOOK {
                return Ok(seen);
            }
        }
        let seen: i64 = self
            .store
            .client()?
            .query_one(
                "SELECT (count(*) * 1000003 + coalesce(sum(tgrelid::int8), 0))::int8 FROM pg_trigger
                 WHERE tgname = $1 AND NOT tgisinternal",
                &[&TRIGGER],
            )?
            .get(0);
        self.triggers_seen.set(Some((Instant::now(), seen)));
        Ok(seen)
    }

    fn read_next(&mut self, limit: usize) -> Result<ChangeBatch> {
        let read = (|| {
            let client = self.client()?;
            Ok(client.query(
                "SELECT id, table_name, row_id, action, row_json, old_row_json, changed_at
                 FROM herald_changes ORDER BY id LIMIT $1",
                &[&(limit as i64)],
            )?)
        })();
        let rows = self.checked(read)?;
        let tables: BTreeSet<String> = rows.iter().map(|r| r.get(1)).collect();
        let floats = self.float_columns(&tables)?;
        let mut batch = ChangeBatch::default();
        let mut ids = Vec::with_capacity(rows.len());
        for row in rows {
            let id: i64 = row.get(0);
            let table: String = row.get(1);
            let row_id: Option<i64> = row.get(2);
            let action: i16 = row.get(3);
            ids.push(id);
            batch.through = Some(id);
            let unreadable = |reason: String| UnreadableChange {
                id,
                table: table.clone(),
                row_id: row_id.unwrap_or(0),
                reason,
            };
            let Some(action) = Action::from_number(action.into()) else {
                batch
                    .unreadable
                    .push(unreadable(format!("its action {action} is unknown")));
                continue;
            };
            let Some(row_id) = row_id else {
                batch.unreadable.push(unreadable(
                    "its table's primary key is not one integer column, so the row has no id"
                        .into(),
                ));
                continue;
            };
            let mut logged: serde_json::Value = row.get(4);
            let mut before: Option<serde_json::Value> = row.get(5);
            if let Some(columns) = floats.get(&table) {
                as_floats(&mut logged, columns);
                if let Some(before) = before.as_mut() {
                    as_floats(before, columns);
                }
            }
            let old_row = match action {
                Action::Delete => Some(logged.clone()),
                _ => before,
            };
            batch.changes.push(Change {
                id,
                table,
                row_id,
                action,
                row: logged,
                old_row,
                changed_at: row.get(6),
            });
        }
        batch.consumed = Consumed::rows(ids);
        Ok(batch)
    }
}

impl Postgres {
    /// The tables to track as they stand in `tx`, and those that cannot be.
    fn wanted_tables(
        &self,
        tx: &mut Tx<'_>,
        script_tables: &[String],
    ) -> Result<(Vec<TrackedTable>, Vec<TrackingProblem>)> {
        let mut names: BTreeSet<String> = script_tables.iter().cloned().collect();
        for row in tx.query(
            "SELECT DISTINCT split_part(event_name, '.', 1) FROM herald_hook_events
             WHERE strpos(event_name, '.') > 0",
            &[],
        )? {
            names.insert(row.get(0));
        }
        let mut wanted = Vec::new();
        let mut problems = Vec::new();
        for name in &names {
            match tracked_table(tx, name)? {
                Ok(table) => wanted.push(table),
                Err(message) => problems.push(TrackingProblem {
                    table: name.clone(),
                    message,
                }),
            }
        }
        Ok((wanted, problems))
    }

    /// Makes herald's triggers match the tables to track, in `tx`: the tables, the problems, and
    /// whether a trigger changed. With `look` (not after `migrate_application`, which rebuilds
    /// tables in the same transaction), a table the last sync tracked that has no trigger now
    /// lost it behind herald's back: reported, as on SQLite, where the administrator looks.
    fn sync_triggers(
        &self,
        tx: &mut Tx<'_>,
        script_tables: &[String],
        look: bool,
    ) -> Result<(BTreeSet<String>, Vec<TrackingProblem>, bool)> {
        let (wanted, mut problems) = self.wanted_tables(tx, script_tables)?;
        let names: BTreeSet<String> = wanted
            .iter()
            .map(|t| t.name.clone())
            .chain(problems.iter().map(|p| p.table.clone()))
            .collect();
        // herald's triggers as they stand: the table, and the name and key they log.
        let existing: Vec<(u32, String, Vec<u8>)> = tx
            .query(
                "SELECT t.tgrelid, c.relname, t.tgargs FROM pg_trigger t
                 JOIN pg_class c ON c.oid = t.tgrelid
                 WHERE t.tgname = $1 AND NOT t.tgisinternal",
                &[&TRIGGER],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        if look {
            let last: BTreeSet<String> = tx
                .query("SELECT name FROM herald_tracked_tables", &[])?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let lost: Vec<TrackingProblem> = wanted
                .iter()
                .filter(|t| last.contains(&t.name))
                .filter(|t| !existing.iter().any(|(oid, _, _)| *oid == t.oid))
                .map(|t| TrackingProblem::lost_triggers(&t.name))
                .collect();
            let failures: Vec<ScriptFailure> =
                lost.iter().map(TrackingProblem::as_failure).collect();
            super::outbox::insert_failures(tx, &failures)?;
            problems.extend(lost);
        }
        let tracked: Vec<&str> = wanted.iter().map(|t| t.name.as_str()).collect();
        tx.execute("DELETE FROM herald_tracked_tables", &[])?;
        tx.execute(
            "INSERT INTO herald_tracked_tables (name) SELECT unnest($1::text[])
             ON CONFLICT DO NOTHING",
            &[&tracked],
        )?;
        let mut changed = false;
        for (oid, _, args) in &existing {
            let keep = wanted
                .iter()
                .any(|t| t.oid == *oid && trigger_args(&t.name, &t.key) == *args);
            if !keep {
                let table = qualified_by_oid(tx, *oid)?;
                tx.batch_execute(&format!("DROP TRIGGER IF EXISTS {TRIGGER} ON {table}"))?;
                changed = true;
            }
        }
        for table in &wanted {
            let present = existing.iter().any(|(oid, _, args)| {
                *oid == table.oid && *args == trigger_args(&table.name, &table.key)
            });
            if !present {
                let qualified = qualified_by_oid(tx, table.oid)?;
                tx.batch_execute(&format!(
                    "CREATE TRIGGER {TRIGGER} AFTER INSERT OR UPDATE OR DELETE ON {} \
                     FOR EACH ROW EXECUTE FUNCTION {}.herald_track({}, {})",
                    qualified,
                    quote_ident(self.schema()),
                    quote_literal(&table.name),
                    quote_literal(&table.key),
                ))
                .map_err(|e| StoreError::Schema {
                    file: format!("the tracking trigger of {}", table.name),
                    message: describe(&e),
                })?;
                changed = true;
            }
        }
        Ok((names, problems, changed))
    }
}
