//! Versioned migrations of herald's own tables.
//!
//! Hand-rolled on purpose: `rusqlite_migration` keeps its version in `PRAGMA user_version`, which
//! belongs to the application that shares this database file. herald records its versions in
//! `herald_migrations` instead and touches nothing that is not prefixed `herald_`.

use rusqlite::{Connection, TransactionBehavior};

use super::{Result, StoreError};

/// Each entry is applied once, in order, inside one transaction. Never edit a released entry: add one.
const MIGRATIONS: &[&str] = &[
    // 1: change log, consumer position, hooks, events, deliveries, attempts, script failures.
    r#"
    CREATE TABLE herald_state (
        key TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    INSERT INTO herald_state (key, value) VALUES ('tracking.position', 0);

    -- Written by the triggers on tracked tables, inside the application's own transaction.
    CREATE TABLE herald_changes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        table_name TEXT NOT NULL,
        row_id INTEGER NOT NULL,
        action INTEGER NOT NULL,
        row_json TEXT NOT NULL,
        old_row_json TEXT,
        changed_at INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))
    );

    CREATE TABLE herald_hooks (
        id TEXT PRIMARY KEY,
        target_url TEXT NOT NULL,
        secret TEXT NOT NULL,
        authorization TEXT,
        description TEXT NOT NULL DEFAULT '',
        company_id INTEGER,
        project_id INTEGER,
        origin TEXT NOT NULL,
        enabled INTEGER NOT NULL DEFAULT 1,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE herald_hook_events (
        hook_id TEXT NOT NULL REFERENCES herald_hooks(id) ON DELETE CASCADE,
        event_name TEXT NOT NULL,
        PRIMARY KEY (hook_id, event_name)
    ) WITHOUT ROWID;
    CREATE INDEX herald_hook_events_by_name ON herald_hook_events(event_name, hook_id);

    CREATE TABLE herald_events (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        trigger_name TEXT NOT NULL,
        row_id INTEGER,
        payload TEXT NOT NULL,
        change_id INTEGER,
        script_hash TEXT,
        created_at INTEGER NOT NULL
    );

    -- One row per event per hook: the outbox. next_attempt_at is NULL once the delivery is final;
    -- while an attempt is in flight it holds the lease's end, so a crash makes the row due again.
    CREATE TABLE herald_deliveries (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        event_seq INTEGER NOT NULL REFERENCES herald_events(seq) ON DELETE CASCADE,
        hook_id TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE INDEX herald_deliveries_due ON herald_deliveries(next_attempt_at)
        WHERE next_attempt_at IS NOT NULL;
    CREATE INDEX herald_deliveries_by_hook ON herald_deliveries(hook_id, seq);

    CREATE TABLE herald_attempts (
        seq INTEGER PRIMARY KEY,
        delivery_seq INTEGER NOT NULL REFERENCES herald_deliveries(seq) ON DELETE CASCADE,
        attempt INTEGER NOT NULL,
        started_at INTEGER NOT NULL,
        duration_ms INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        status_code INTEGER,
        request_headers TEXT NOT NULL,
        response_headers TEXT,
        response_body TEXT,
        error TEXT
    );
    CREATE INDEX herald_attempts_by_delivery ON herald_attempts(delivery_seq, attempt);

    CREATE TABLE herald_script_failures (
        seq INTEGER PRIMARY KEY,
        script TEXT NOT NULL,
        line INTEGER,
        col INTEGER,
        message TEXT NOT NULL,
        trigger_name TEXT,
        table_name TEXT,
        row_id INTEGER,
        change_id INTEGER,
        created_at INTEGER NOT NULL
    );
    "#,
    // 2: hooks as administrators configure them (secret rotation), events that say what they are
    // about (resource, type, scope) for the history and scope filtering, the URL of each attempt.
    r#"
    ALTER TABLE herald_hooks ADD COLUMN previous_secret TEXT;
    ALTER TABLE herald_hooks ADD COLUMN previous_secret_until INTEGER;
    ALTER TABLE herald_hooks ADD COLUMN updated_at INTEGER;
    UPDATE herald_hooks SET updated_at = created_at;

    ALTER TABLE herald_events ADD COLUMN resource_name TEXT;
    ALTER TABLE herald_events ADD COLUMN event_type TEXT;
    ALTER TABLE herald_events ADD COLUMN company_id INTEGER;
    ALTER TABLE herald_events ADD COLUMN project_id INTEGER;
    CREATE INDEX herald_events_by_time ON herald_events(created_at);

    ALTER TABLE herald_attempts ADD COLUMN url TEXT;
    CREATE INDEX herald_deliveries_by_event ON herald_deliveries(event_seq);
    CREATE INDEX herald_script_failures_by_time ON herald_script_failures(created_at);
    "#,
    // 3: waiting deliveries by hook, so that claims seek per hook instead of scanning the outbox.
    r#"
    CREATE INDEX herald_deliveries_waiting ON herald_deliveries(hook_id, next_attempt_at)
        WHERE next_attempt_at IS NOT NULL;
    "#,
    // 4: a hook's run of failed attempts, for disabling endpoints that keep failing.
    r#"
    ALTER TABLE herald_hooks ADD COLUMN failing_since INTEGER;
    ALTER TABLE herald_hooks ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE herald_hooks ADD COLUMN failure_warned INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE herald_hooks ADD COLUMN disabled_reason TEXT;
    "#,
    // 5: `herald_deliveries_waiting` (hook_id, next_attempt_at) covers every query the due index
    // served; each delivery moved it three times (stored, leased, finished) for nothing.
    r#"
    DROP INDEX IF EXISTS herald_deliveries_due;
    "#,
    // 6: the change log without AUTOINCREMENT, and with room for a row's values as a JSON array
    // whose column names are kept once per table layout. Both are for the application's writes:
    // AUTOINCREMENT reads and rewrites `sqlite_sequence` in every tracked statement (a fifth of
    // a tracked insert), and the names in every row's `json_object` cost as much again.
    //
    // Ids must still never go back below the consumer's position, or new changes would hide
    // behind it: the consumer keeps the last change it consumed (see `commit_consumed_changes`),
    // and a consumed-up-to row stands in for it here when the log is empty.
    //
    // `legacy_alter_table`: the tracking triggers on the application's tables name
    // `herald_changes` and must keep doing so; a modern RENAME would check (and fail on) them
    // while the table is missing, and would rewrite them to the old name.
    r#"
    PRAGMA legacy_alter_table = ON;
    CREATE TABLE herald_changes_next (
        id INTEGER PRIMARY KEY,
        table_name TEXT NOT NULL,
        row_id INTEGER NOT NULL,
        action INTEGER NOT NULL,
        row_json TEXT NOT NULL,
        old_row_json TEXT,
        changed_at INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)),
        layout INTEGER
    );
    INSERT INTO herald_changes_next (id, table_name, row_id, action, row_json, old_row_json, changed_at)
        SELECT id, table_name, row_id, action, row_json, old_row_json, changed_at FROM herald_changes;
    INSERT INTO herald_changes_next (id, table_name, row_id, action, row_json, changed_at)
        SELECT value, '', 0, 0, '{}', 0 FROM herald_state
        WHERE key = 'tracking.position'
          AND value > coalesce((SELECT max(id) FROM herald_changes_next), 0);
    DROP TABLE herald_changes;
    ALTER TABLE herald_changes_next RENAME TO herald_changes;
    PRAGMA legacy_alter_table = OFF;

    -- Whatever deletes from the log (an older herald, an operator dropping a backlog), its newest
    -- row stays, so the next change's id is still above every id handed out before.
    CREATE TRIGGER herald_changes_keep_last BEFORE DELETE ON herald_changes
    WHEN OLD.id = (SELECT max(id) FROM herald_changes)
    BEGIN SELECT RAISE(IGNORE); END;

    -- The column names of each tracked table's layout, in the order of the trigger's values.
    -- Never deleted: a change names its layout by id for as long as it waits.
    CREATE TABLE herald_tracking_layouts (
        id INTEGER PRIMARY KEY,
        table_name TEXT NOT NULL,
        columns TEXT NOT NULL,
        UNIQUE (table_name, columns)
    );
    "#,
    // 7: which API token made a REST-hooks subscription (by the token's name), so that a
    // subscribe-only token removes only its own. NULL for hooks made by an administrator and for
    // subscriptions made before this version: only an admin token removes those.
    r#"
    ALTER TABLE herald_hooks ADD COLUMN made_by TEXT;
    "#,
    // 8: values herald keeps sealed for itself: the key check (a herald started with another key
    // refuses to start).
    r#"
    CREATE TABLE herald_secrets (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    "#,
    // 9: the herald processes of the database, as on PostgreSQL (on SQLite, one).
    r#"
    CREATE TABLE herald_nodes (
        name TEXT PRIMARY KEY,
        started_at INTEGER NOT NULL,
        heartbeat_at INTEGER NOT NULL,
        script_set TEXT NOT NULL,
        consumer INTEGER NOT NULL DEFAULT 0,
        version TEXT NOT NULL
    );
    "#,
    // 10: the admin pages' sessions (by their cookie's hash) and failed sign-ins by address, in
    // the database as on PostgreSQL, where several nodes share them.
    r#"
    CREATE TABLE herald_sessions (
        id_hash TEXT PRIMARY KEY,
        csrf TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        last_used_at INTEGER NOT NULL,
        flash TEXT
    );
    CREATE INDEX herald_sessions_last_used ON herald_sessions(last_used_at);
    CREATE TABLE herald_sign_in_failures (
        address TEXT PRIMARY KEY,
        restored_at INTEGER NOT NULL,
        blocked_until INTEGER NOT NULL
    );
    "#,
    // 11: REST-hooks subscriptions herald removed itself (the target answered 410), so that the
    // integration's later unsubscribe is acknowledged rather than answered 404.
    r#"
    CREATE TABLE herald_gone_subscriptions (
        id TEXT PRIMARY KEY,
        made_by TEXT,
        gone_at INTEGER NOT NULL
    );
    "#,
    // 12: a hook's filter (a rhai expression over the payload) and how many events it kept from
    // the hook; a delivery held because the filter failed on its event, with the error.
    r#"
    ALTER TABLE herald_hooks ADD COLUMN filter TEXT;
    ALTER TABLE herald_hooks ADD COLUMN filtered_out INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE herald_deliveries ADD COLUMN filter_error TEXT;
    "#,
    // 13: events sent by hand to try a hook (`POST /api/v1/hooks/{id}/test`), marked as tests.
    r#"
    ALTER TABLE herald_events ADD COLUMN test INTEGER NOT NULL DEFAULT 0;
    "#,
    // 14: a hook's rate limit: the most deliveries per second its endpoint takes.
    r#"
    ALTER TABLE herald_hooks ADD COLUMN rate_limit_per_second REAL;
    "#,
    // 15: backfills (existing rows queued as events for one hook): their rows in order, their
    // position, and the events they queued.
    r#"
    CREATE TABLE herald_backfills (
        id TEXT PRIMARY KEY,
        hook_id TEXT NOT NULL,
        event_name TEXT NOT NULL,
        status TEXT NOT NULL,
        total INTEGER NOT NULL,
        done INTEGER NOT NULL,
        failed INTEGER NOT NULL,
        error TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE INDEX herald_backfills_hook ON herald_backfills(hook_id, created_at);
    CREATE TABLE herald_backfill_rows (
        backfill_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        row_id INTEGER NOT NULL,
        PRIMARY KEY (backfill_id, position)
    ) WITHOUT ROWID;
    ALTER TABLE herald_events ADD COLUMN backfill_id TEXT;
    "#,
];

pub(super) fn migrate(conn: &mut Connection) -> Result<()> {
    migrate_through(conn, MIGRATIONS)
}

/// Applies the first `migrations.len()` migrations; tests stop short to build older databases.
fn migrate_through(conn: &mut Connection, migrations: &[&str]) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS herald_migrations (
            version INTEGER PRIMARY KEY,
            applied_at INTEGER NOT NULL
        )",
    )?;
    let applied: i64 = tx.query_row(
        "SELECT coalesce(max(version), 0) FROM herald_migrations",
        [],
        |r| r.get(0),
    )?;
    if applied > migrations.len() as i64 {
        return Err(StoreError::NewerDatabase {
            found: applied,
            known: migrations.len() as i64,
        });
    }
    for (index, sql) in migrations.iter().enumerate() {
        let version = index as i64 + 1;
        if version <= applied {
            continue;
        }
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO herald_migrations (version, applied_at) VALUES (?1, ?2)",
            (version, crate::clock::now_ms()),
        )?;
        tracing::info!(version, "applied herald migration");
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrating_twice_is_a_no_op_and_leaves_user_version_alone() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", 42).unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let versions: i64 = conn
            .query_row("SELECT count(*) FROM herald_migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(versions, MIGRATIONS.len() as i64);
        let user_version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(user_version, 42);
    }

    #[test]
    fn a_database_from_a_newer_herald_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        let error = migrate_through(&mut conn, &MIGRATIONS[..5]).unwrap_err();
        assert!(
            matches!(error, StoreError::NewerDatabase { found, known: 5 } if found == MIGRATIONS.len() as i64),
            "{error}"
        );
    }

    /// A database of version 5 with a tracking trigger of that version: changes consumed and
    /// deleted up to 3 (so the log is empty and only `sqlite_sequence` knew the next id), then
    /// change 4 logged and not yet consumed.
    fn version_5_database(path: &std::path::Path, consume_all: bool) {
        let mut conn = Connection::open(path).unwrap();
        migrate_through(&mut conn, &MIGRATIONS[..5]).unwrap();
        conn.execute_batch(
            "CREATE TABLE Deal (id INTEGER PRIMARY KEY, title TEXT);
             CREATE TRIGGER herald_track_Deal_insert AFTER INSERT ON Deal BEGIN
               INSERT INTO herald_changes (table_name, row_id, action, row_json, old_row_json)
               VALUES ('Deal', NEW.rowid, 1, json_object('id', NEW.id, 'title', NEW.title), NULL);
             END;
             INSERT INTO Deal (title) VALUES ('a'), ('b'), ('c');
             UPDATE herald_state SET value = 3 WHERE key = 'tracking.position';
             DELETE FROM herald_changes WHERE id <= 3;
             INSERT INTO Deal (title) VALUES ('d');",
        )
        .unwrap();
        if consume_all {
            conn.execute_batch(
                "UPDATE herald_state SET value = 4 WHERE key = 'tracking.position';
                 DELETE FROM herald_changes WHERE id <= 4;",
            )
            .unwrap();
        }
    }

    #[test]
    fn the_log_rebuilt_without_autoincrement_keeps_waiting_changes_and_ids_above_the_position() {
        for consume_all in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("t.db");
            version_5_database(&path, consume_all);
            let store = crate::store::Store::open(&path).unwrap();
            let mut reader = store.change_feed().unwrap();
            let waiting = reader.read_next(10).unwrap().changes;
            if consume_all {
                assert!(waiting.is_empty());
            } else {
                assert_eq!(waiting.len(), 1);
                assert_eq!(
                    (waiting[0].id, waiting[0].row["title"].as_str()),
                    (4, Some("d"))
                );
            }
            // The trigger of version 5 still logs into the rebuilt table, above the position.
            let app = Connection::open(&path).unwrap();
            app.execute("INSERT INTO Deal (title) VALUES ('e')", [])
                .unwrap();
            let after = reader.read_next(10).unwrap().changes;
            let newest = after.last().unwrap();
            assert_eq!(newest.id, 5);
            assert_eq!(newest.row["title"], "e");
            let autoincrement: i64 = app
                .query_row(
                    "SELECT count(*) FROM sqlite_schema WHERE name = 'herald_changes'
                       AND sql LIKE '%AUTOINCREMENT%'",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(autoincrement, 0);
        }
    }
}
