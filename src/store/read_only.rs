//! The connection scripts query through. Read-only by construction: opened with
//! `SQLITE_OPEN_READ_ONLY`, `query_only` on, and an authorizer that allows reading the application's
//! tables and nothing else (no writes, no ATTACH, no PRAGMA, no peek at herald's own tables, which
//! hold secrets).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use super::{open_connection, Cell, QueryError, Result, RowLimit, Rows, ScriptDb};

pub struct ReadOnlyDb {
    conn: Connection,
    /// True only while herald itself begins or ends a read snapshot: the authorizer lets `BEGIN`
    /// and `COMMIT` through then, and never for a statement a script sends (a script's `BEGIN`
    /// would hold a snapshot open for good and stop checkpoints).
    herald_control: Arc<AtomicBool>,
}

/// What scripts may read: the application's tables, not herald's (they hold secrets) and not the
/// database's own (`sqlite_schema` holds herald's whole schema and its triggers' SQL, `dbstat` the
/// tables' sizes, the `pragma_*` functions their layout). rhai's JSON helpers stay readable.
fn is_application_table(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    !(name.starts_with("herald_")
        || name.starts_with("sqlite_")
        || name.starts_with("pragma_")
        || name == "dbstat")
}

/// The longest string or blob a script's query may make or read (`SQLITE_LIMIT_LENGTH`), and the
/// longest statement: one SQL call cannot build gigabytes in a single function, out of reach of
/// the time budget's checks between instructions.
const MAX_VALUE_BYTES: i32 = 16 * 1024 * 1024;
const MAX_SQL_BYTES: i32 = 100 * 1024;

/// The read-only connection's page cache: its share of memory, whatever the queries.
const CACHE_KIB: i64 = 8 * 1024;

fn authorize(ctx: AuthContext<'_>) -> Authorization {
    match ctx.action {
        AuthAction::Select | AuthAction::Recursive | AuthAction::Function { .. } => {
            Authorization::Allow
        }
        AuthAction::Read { table_name, .. } if !is_application_table(table_name) => {
            Authorization::Deny
        }
        AuthAction::Read { .. } => Authorization::Allow,
        _ => Authorization::Deny,
    }
}

impl ReadOnlyDb {
    pub(super) fn open(path: &Path) -> Result<ReadOnlyDb> {
        let conn = open_connection(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        conn.pragma_update(None, "query_only", "ON")?;
        conn.set_limit(
            rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH,
            MAX_VALUE_BYTES,
        )?;
        conn.set_limit(
            rusqlite::limits::Limit::SQLITE_LIMIT_SQL_LENGTH,
            MAX_SQL_BYTES,
        )?;
        conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
        // Sorts and temporary b-trees go to a file, not memory.
        conn.pragma_update(None, "temp_store", "FILE")?;
        let herald_control = Arc::new(AtomicBool::new(false));
        let control = herald_control.clone();
        conn.authorizer(Some(move |ctx: AuthContext<'_>| match ctx.action {
            AuthAction::Transaction { .. } if control.load(Ordering::Relaxed) => {
                Authorization::Allow
            }
            _ => authorize(ctx),
        }));
        Ok(ReadOnlyDb {
            conn,
            herald_control,
        })
    }

    fn as_herald(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<()>) -> Result<()> {
        self.herald_control.store(true, Ordering::Relaxed);
        let result = f(&self.conn);
        self.herald_control.store(false, Ordering::Relaxed);
        Ok(result?)
    }
}

impl ScriptDb for ReadOnlyDb {
    /// Makes the following queries read one snapshot of the database, taken at the first of them,
    /// until [`ReadOnlyDb::end_snapshot`]: one read transaction (one lock, one check of the WAL)
    /// instead of one per query. The statements are prepared afresh, never cached, so a script
    /// cannot reach them through the statement cache.
    fn begin_snapshot(&self) -> Result<()> {
        self.as_herald(|conn| conn.execute_batch("BEGIN DEFERRED"))
    }

    /// Ends the snapshot, if one is open (an error inside it may have ended it already).
    fn end_snapshot(&self) -> Result<()> {
        if self.conn.is_autocommit() {
            return Ok(());
        }
        self.as_herald(|conn| conn.execute_batch("COMMIT"))
    }

    /// Calls `interrupted` every few thousand SQLite instructions; a query stops with an error as
    /// soon as it returns true. This is how a script's wall-clock budget covers its queries.
    fn set_interrupt_check(&self, interrupted: Box<dyn FnMut() -> bool + Send>) {
        self.conn.progress_handler(4_000, Some(interrupted));
    }

    /// Runs one read statement and returns its rows, within `limit`.
    fn query(&self, sql: &str, params: &[Cell], limit: RowLimit) -> Result<Rows, QueryError> {
        let sqlite = |e: rusqlite::Error| QueryError::Database(describe(e));
        let mut stmt = self.conn.prepare_cached(sql).map_err(sqlite)?;
        if !stmt.readonly() {
            return Err(QueryError::NotAReadOnlyStatement);
        }
        let columns: Vec<String> = (0..stmt.column_count())
            .map(|i| stmt.column_name(i).map(String::from))
            .collect::<rusqlite::Result<_>>()
            .map_err(sqlite)?;
        let mut rows = stmt
            .query(rusqlite::params_from_iter(params))
            .map_err(sqlite)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(sqlite)? {
            if let RowLimit::AtMost(max_rows) = limit {
                if out.len() == max_rows {
                    return Err(QueryError::TooManyRows(max_rows));
                }
            }
            let mut cells = Vec::with_capacity(columns.len());
            for i in 0..columns.len() {
                cells.push(match row.get_ref(i).map_err(sqlite)? {
                    ValueRef::Null => Cell::Null,
                    ValueRef::Integer(n) => Cell::Integer(n),
                    ValueRef::Real(x) => Cell::Real(x),
                    ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
                });
            }
            out.push(cells);
            if limit == RowLimit::First {
                break;
            }
        }
        Ok(Rows {
            columns,
            values: out,
        })
    }
}

/// A parameter is bound where it lies, without a copy.
impl rusqlite::ToSql for Cell {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::ToSqlOutput;
        Ok(match self {
            Cell::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Cell::Integer(n) => ToSqlOutput::Borrowed(ValueRef::Integer(*n)),
            Cell::Real(x) => ToSqlOutput::Borrowed(ValueRef::Real(*x)),
            Cell::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
            Cell::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            // SQLite's booleans are integers, and its JSON is text.
            Cell::Bool(b) => ToSqlOutput::Borrowed(ValueRef::Integer(*b as i64)),
            Cell::Json(value) => {
                ToSqlOutput::Owned(rusqlite::types::Value::Text(value.to_string()))
            }
        })
    }
}

/// SQLite's own message, without rusqlite's wrapping, plus a hint for the errors scripts meet.
fn describe(error: rusqlite::Error) -> String {
    match &error {
        rusqlite::Error::SqliteFailure(e, message) => {
            let text = message.clone().unwrap_or_else(|| e.to_string());
            match e.code {
                rusqlite::ErrorCode::AuthorizationForStatementDenied => format!(
                    "{text}: scripts may only read the application's tables (no writes, no herald_* tables, no ATTACH or PRAGMA)"
                ),
                rusqlite::ErrorCode::OperationInterrupted => {
                    "query interrupted: the script ran out of its time budget".into()
                }
                _ => text,
            }
        }
        rusqlite::Error::InvalidParameterCount(given, expected) => {
            format!("the statement takes {expected} parameters, {given} given")
        }
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn db() -> (tempfile::TempDir, ReadOnlyDb) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        store
            .apply_schema("schema.sql", "CREATE TABLE Deal (id INTEGER PRIMARY KEY, title TEXT); INSERT INTO Deal VALUES (1, 'Roof'), (2, 'Walls');")
            .unwrap();
        let ro = ReadOnlyDb::open(&dir.path().join("t.db")).unwrap();
        (dir, ro)
    }

    #[test]
    fn reads_rows_with_bound_parameters() {
        let (_dir, ro) = db();
        let rows = ro
            .query(
                "SELECT id, title FROM Deal WHERE id = ?",
                &[Cell::Integer(2)],
                RowLimit::AtMost(10),
            )
            .unwrap();
        assert_eq!(
            rows,
            Rows {
                columns: vec!["id".into(), "title".into()],
                values: vec![vec![Cell::Integer(2), Cell::Text("Walls".into())]],
            }
        );
    }

    #[test]
    fn writes_attach_pragmas_and_herald_tables_are_refused() {
        let (_dir, ro) = db();
        // The authorizer is the first defence, and refuses every one of them.
        for (sql, refusal) in [
            ("DELETE FROM Deal", "not authorized"),
            ("INSERT INTO Deal (title) VALUES ('x')", "not authorized"),
            ("ATTACH DATABASE '/tmp/x.db' AS x", "not authorized"),
            ("PRAGMA query_only = OFF", "not authorized"),
            (
                "SELECT secret FROM herald_hooks",
                "access to herald_hooks.secret is prohibited",
            ),
            (
                "SELECT sql FROM sqlite_master",
                "access to sqlite_master.sql is prohibited",
            ),
            (
                "SELECT sql FROM sqlite_schema",
                "access to sqlite_master.sql is prohibited",
            ),
            ("SELECT name FROM sqlite_temp_master", "prohibited"),
            ("SELECT name FROM pragma_table_list", "prohibited"),
            ("SELECT name FROM pragma_table_info('Deal')", "prohibited"),
            (
                "SELECT length(randomblob(600000000))",
                "string or blob too big",
            ),
        ] {
            let err = ro.query(sql, &[], RowLimit::AtMost(10)).unwrap_err();
            assert!(
                matches!(&err, QueryError::Database(message) if message.contains(refusal)),
                "{sql}: {err}"
            );
        }
        assert_eq!(
            ro.query("SELECT count(*) AS n FROM Deal", &[], RowLimit::First)
                .unwrap()
                .values[0][0],
            Cell::Integer(2)
        );
    }

    #[test]
    fn behind_the_authorizer_a_write_is_still_refused_twice() {
        let (_dir, ro) = db();
        ro.conn
            .authorizer(None::<fn(AuthContext<'_>) -> Authorization>);
        // The statement check: a statement that would write is not run at all.
        let err = ro
            .query("DELETE FROM Deal", &[], RowLimit::AtMost(10))
            .unwrap_err();
        assert!(matches!(err, QueryError::NotAReadOnlyStatement), "{err}");
        // The connection: opened read-only, in query_only mode.
        let err = ro.conn.execute("DELETE FROM Deal", []).unwrap_err();
        assert!(err.to_string().contains("readonly"), "{err}");
        let query_only: i64 = ro
            .conn
            .query_row("PRAGMA query_only", [], |r| r.get(0))
            .unwrap();
        assert_eq!(query_only, 1);
    }

    #[test]
    fn a_snapshot_reads_one_state_and_scripts_cannot_open_one() {
        let (dir, ro) = db();
        for sql in ["BEGIN", "COMMIT", "SAVEPOINT s"] {
            assert!(ro.query(sql, &[], RowLimit::First).is_err(), "{sql}");
        }
        let app = Connection::open(dir.path().join("t.db")).unwrap();
        let count = |ro: &ReadOnlyDb| {
            ro.query("SELECT count(*) FROM Deal", &[], RowLimit::First)
                .unwrap()
                .values[0][0]
                .clone()
        };
        ro.begin_snapshot().unwrap();
        assert_eq!(count(&ro), Cell::Integer(2));
        app.execute("INSERT INTO Deal (title) VALUES ('Roof')", [])
            .unwrap();
        assert_eq!(count(&ro), Cell::Integer(2), "the snapshot holds");
        ro.end_snapshot().unwrap();
        assert_eq!(count(&ro), Cell::Integer(3));
        // Still refused after herald used them itself.
        assert!(ro.query("BEGIN", &[], RowLimit::First).is_err());
        ro.end_snapshot().unwrap();
    }

    #[test]
    fn row_count_is_capped() {
        let (_dir, ro) = db();
        let err = ro
            .query("SELECT * FROM Deal", &[], RowLimit::AtMost(1))
            .unwrap_err();
        assert_eq!(err.to_string(), "more than 1 rows; add a LIMIT");
        let first = ro
            .query("SELECT title FROM Deal ORDER BY id", &[], RowLimit::First)
            .unwrap();
        assert_eq!(first.values, vec![vec![Cell::Text("Roof".into())]]);
    }
}
