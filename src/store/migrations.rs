//! Versioned migrations of herald's own tables.
//!
//! Hand-rolled on purpose: `rusqlite_migration` keeps its version in `PRAGMA user_version`, which
//! belongs to the application that shares this database file. herald records its versions in
//! `herald_migrations` instead and touches nothing that is not prefixed `herald_`.

use rusqlite::{Connection, TransactionBehavior};

use super::Result;

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
];

pub(super) fn migrate(conn: &mut Connection) -> Result<()> {
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
    for (index, sql) in MIGRATIONS.iter().enumerate() {
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
}
