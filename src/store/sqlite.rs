//! The SQLite backend's handle: herald's one writing connection, the WAL checkpointer, how every
//! connection waits for the application's write lock, and the write helpers the rest of the
//! backend's files build on. The files beside it (`hooks.rs`, `history.rs`, `outbox/`,
//! `changes.rs`, ...) implement `backend`'s traits for `Sqlite`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use super::{migrations, Operations, ReadOnlyDb, Result, ScriptDb, Secrets, StoreError};

/// The writer's page cache, in KiB.
const WRITER_CACHE_KIB: i64 = 32 * 1024;

/// How long a connection waits for the application's write lock before giving up with "busy".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The SQLite backend: one database file holds the application's tables and herald's own. Cheap to
/// clone; every method blocks.
#[derive(Clone)]
pub struct Sqlite {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// herald's one writing connection. A std mutex: it is only ever held inside blocking code,
    /// never across an `.await`, and SQLite would serialise the writes anyway.
    writer: Mutex<Connection>,
    /// herald's reads outside its write transactions (the admin API and pages, `/metrics`, the
    /// worker's look at which hooks are still enabled): in WAL mode they read beside the writer
    /// instead of queueing behind its transactions.
    reader: Mutex<Connection>,
    /// The connection that checkpoints the WAL, apart from the writer so that copying the WAL
    /// never holds up herald's own commits (only making a long one start over does, briefly).
    checkpointer: Mutex<Option<Checkpointer>>,
    /// Seals hooks' secrets and authorization headers at rest.
    secrets: Secrets,
    /// herald's own writes that last failed for another reason than a busy lock (a full disk, an
    /// I/O error, a read-only file), by what they were doing; cleared when one succeeds.
    write_problems: Mutex<std::collections::BTreeMap<&'static str, String>>,
}

struct Checkpointer {
    conn: Connection,
    /// The WAL's frame count when this checkpointer last made it start over.
    started_over_at: Option<i64>,
    /// Resets in a row that readers kept from completing.
    resets_in_the_way: u32,
}

impl Sqlite {
    /// Opens (creating if needed) the database, switches it to WAL and brings herald's tables to the
    /// latest version.
    pub fn open(path: &Path) -> Result<Sqlite> {
        Self::open_with_secrets(path, Secrets::none())
    }

    /// Opens the database with the key that seals hooks' secrets at rest.
    pub fn open_with_secrets(path: &Path, secrets: Secrets) -> Result<Sqlite> {
        let mut conn = open_connection(path, OpenFlags::default())?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // herald's commits never checkpoint: a checkpoint copies the WAL into the database and
        // syncs it, tens of milliseconds that would land on whichever event commits at that moment.
        // `checkpoint` does it in the background instead (see `server`).
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        // When the WAL starts over (see `checkpoint`), a file grown past this is cut back to it.
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT_BYTES)?;
        // A claim seeks the front of every waiting hook's deliveries: with a large outbox those
        // pages no longer fit SQLite's default 2 MiB cache, and each claim read them again. The
        // cache grows only as pages are used.
        conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
        migrations::migrate(&mut conn)?;
        let reader = open_connection(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        Ok(Sqlite {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                writer: Mutex::new(conn),
                reader: Mutex::new(reader),
                checkpointer: Mutex::new(None),
                secrets,
                write_problems: Mutex::default(),
            }),
        })
    }

    /// Returns whether the WAL was made to start over.
    pub(super) fn checkpoint_resetting_past(&self, reset_frames: i64) -> Result<bool> {
        let mut guard = self
            .inner
            .checkpointer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if guard.is_none() {
            let conn = open_connection(&self.inner.path, OpenFlags::default())?;
            // A reader (the application's, say) can keep the WAL from starting over; then the
            // reset waits for it this long at most, and herald's writes with it.
            conn.busy_timeout(WAL_RESET_WAIT)?;
            *guard = Some(Checkpointer {
                conn,
                started_over_at: None,
                resets_in_the_way: 0,
            });
        }
        let state = guard.as_mut().expect("opened above");
        let conn = &state.conn;
        let passive = || -> Result<(i64, i64)> {
            Ok(conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(1)?, r.get(2)?))
            })?)
        };
        let (frames, mut copied) = passive()?;
        // The WAL starts over at the next commit after a reset; until one comes it still counts
        // the old frames, all copied, and there is nothing to do again.
        let reset_already = state.started_over_at == Some(frames) && copied == frames;
        if frames < reset_frames || reset_already {
            if frames < reset_frames {
                state.started_over_at = None;
            }
            return Ok(false);
        }
        // A pass copies the frames that were there when it began; the commits made meanwhile are
        // the next pass's work. Pass again until a pass had little to copy (so little came in
        // during it): herald's writes then wait only for that much (and the sync).
        for _ in 0..WAL_CATCH_UP_PASSES {
            let (now_frames, now_copied) = passive()?;
            let copied_by_this_pass = now_frames - copied;
            copied = now_copied;
            if copied_by_this_pass <= WAL_RESET_TAIL_FRAMES {
                break;
            }
        }
        let writes_held = self.writer();
        let started = std::time::Instant::now();
        // RESTART rather than TRUNCATE: the next commits overwrite the WAL's first frames instead
        // of growing an emptied file again (`journal_size_limit` cuts back a file grown too far).
        let (busy, restarted_at): (i64, i64) =
            conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        drop(writes_held);
        tracing::debug!(
            frames,
            readers_in_the_way = busy != 0,
            held_us = started.elapsed().as_micros() as u64,
            "WAL checkpointed to start over"
        );
        if busy == 0 {
            state.started_over_at = Some(restarted_at);
            state.resets_in_the_way = 0;
        } else {
            state.resets_in_the_way += 1;
            if state.resets_in_the_way == WAL_RESETS_BEFORE_WARNING {
                tracing::warn!(
                    frames,
                    "the WAL keeps growing: readers have kept it from starting over for {} tries \
                     in a row (a transaction the application left open?)",
                    WAL_RESETS_BEFORE_WARNING
                );
            }
        }
        Ok(busy == 0)
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub(super) fn secrets(&self) -> &Secrets {
        &self.inner.secrets
    }

    pub(super) fn writer(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves the connection usable: SQLite rolls back an open
        // transaction when the next one begins, so poisoning carries no meaning here.
        self.inner
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The connection for reads outside a write transaction: it sees every committed write.
    pub(super) fn reader(&self) -> MutexGuard<'_, Connection> {
        self.inner
            .reader
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `work` in one `BEGIN IMMEDIATE` transaction on herald's writer and commits it, or rolls
    /// it back if `work` fails (an early `Ok` commits what it wrote, if anything).
    pub(super) fn write<T>(&self, work: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = work(&tx)?;
        tx.commit()?;
        Ok(value)
    }

    /// `write` for the writes herald's loops keep making (storing events, recording attempts): how
    /// it went is noted under `what` for `write_problems`, so that `/readyz` names a write that
    /// keeps failing and clears it with the next that succeeds.
    pub(super) fn write_noting<T>(
        &self,
        what: &'static str,
        work: impl FnOnce(&Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        let result = self.write(work);
        self.noting(what, result)
    }

    /// Remembers how one of herald's writes went, for `write_problems`. A busy lock is not a
    /// problem (it passes); a lost race with another consumer is not either.
    pub(super) fn noting<T>(&self, operation: &'static str, result: Result<T>) -> Result<T> {
        let mut problems = self
            .inner
            .write_problems
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match &result {
            Ok(_) => {
                problems.remove(operation);
            }
            Err(e) if e.is_busy() || matches!(e, StoreError::ConcurrentConsumer) => {}
            Err(e) => {
                problems.insert(operation, e.to_string());
            }
        }
        result
    }
}

impl Operations for Sqlite {
    /// Whether the database answers a trivial read (for `/readyz`).
    fn ping(&self) -> Result<()> {
        let conn = open_connection(&self.inner.path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        conn.query_row("SELECT count(*) FROM herald_state", [], |_| Ok(()))?;
        Ok(())
    }

    /// Whether herald could take the write lock within `wait`: false while another process holds
    /// a write transaction that long (readers never block in WAL mode, so `ping` cannot tell). Takes
    /// the lock and lets it go at once, on a connection of its own.
    fn can_write(&self, wait: Duration) -> Result<bool> {
        let conn =
            Connection::open_with_flags(&self.inner.path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        conn.busy_timeout(wait)?;
        match conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;") {
            Ok(()) => Ok(true),
            Err(e) => {
                let error = StoreError::from(e);
                if error.is_busy() {
                    Ok(false)
                } else {
                    Err(error)
                }
            }
        }
    }

    /// What herald cannot write, in words (`storing events: database or disk is full`); empty
    /// while its writes go through.
    fn write_problems(&self) -> Vec<String> {
        self.inner
            .write_problems
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .map(|(operation, error)| format!("{operation}: {error}"))
            .collect()
    }

    /// Copies what the WAL holds into the database without waiting for anyone (a passive
    /// checkpoint), so that the WAL stays small. Called on a timer, off the paths events take.
    ///
    /// A passive checkpoint alone never empties a WAL that someone keeps writing to: SQLite starts
    /// the WAL over only once a checkpoint caught up with the last frame, and under a steady load
    /// the next commit always lands first. The WAL then grows without end (gigabytes during a long
    /// drain), and every page read searches its ever larger index. So past `WAL_RESET_FRAMES`
    /// the checkpointer catches up with passive passes, then holds herald's writes back while a
    /// RESTART checkpoint copies the last few frames, syncs the database and makes the WAL start
    /// over. RESTART holds SQLite's write lock as well, so the application's writes wait too.
    /// Measured in the 1,000,000-delivery drain: one hold per 64 MiB written, median 29 ms, at
    /// most ~110 ms, mostly the sync and readers finishing.
    fn maintain(&self) -> Result<()> {
        self.checkpoint_resetting_past(WAL_RESET_FRAMES)?;
        Ok(())
    }

    /// Runs the application's schema script (`schema.sql`). It must be idempotent.
    fn apply_schema(&self, file_name: &str, sql: &str) -> Result<()> {
        let conn = self.writer();
        conn.execute_batch(sql).map_err(|e| StoreError::Schema {
            file: file_name.to_owned(),
            message: e.to_string(),
        })
    }

    /// A connection that cannot write, for scripts' `db_query`.
    fn script_db(&self) -> Result<Box<dyn ScriptDb>> {
        Ok(Box::new(ReadOnlyDb::open(&self.inner.path)?))
    }
}

pub(super) fn open_connection(path: &Path, flags: OpenFlags) -> Result<Connection> {
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_handler(Some(wait_for_lock))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // NORMAL is crash-safe in WAL mode: a process crash loses nothing committed; only a power cut can
    // lose the last transactions, never corrupt the file.
    if !flags.contains(OpenFlags::SQLITE_OPEN_READ_ONLY) {
        conn.pragma_update(None, "synchronous", "NORMAL")?;
    }
    Ok(conn)
}

/// WAL frames (4 KiB pages, so 64 MiB) past which the checkpointer makes the WAL start over.
const WAL_RESET_FRAMES: i64 = 16_384;
/// At most this many frames are left to copy while herald's writes wait for the WAL to start over
/// (1 MiB), unless the passes that copy the rest beforehand cannot catch up.
const WAL_RESET_TAIL_FRAMES: i64 = 256;
const WAL_CATCH_UP_PASSES: usize = 8;
/// Failed resets in a row (half a second apart) before herald warns that the WAL keeps growing.
const WAL_RESETS_BEFORE_WARNING: u32 = 20;
/// The WAL file's size kept after it starts over: room for the frames between two resets.
const WAL_SIZE_LIMIT_BYTES: i64 = 2 * WAL_RESET_FRAMES * 4096;
/// How long a WAL reset waits for readers to leave the WAL before trying again next time.
const WAL_RESET_WAIT: Duration = Duration::from_millis(20);

/// How a connection waits for the application's write lock: SQLite's own busy handler sleeps 1, 2,
/// 5, 10, 15, 20, 25, 25, 50... ms between tries, so a lock held for a millisecond can cost an
/// event 10 ms. herald tries again every 100 µs at first, then backs off, and gives up (busy) after
/// about `BUSY_TIMEOUT`.
fn wait_for_lock(tries: i32) -> bool {
    const FAST: i32 = 20; // 2 ms of 100 µs naps
    const MEDIUM: i32 = 100; // then 80 ms of 1 ms naps
    let (nap, slept_before) = if tries < FAST {
        (
            Duration::from_micros(100),
            Duration::from_micros(100) * tries as u32,
        )
    } else if tries < MEDIUM {
        (
            Duration::from_millis(1),
            Duration::from_millis(2) + Duration::from_millis(1) * (tries - FAST) as u32,
        )
    } else {
        (
            Duration::from_millis(5),
            Duration::from_millis(82) + Duration::from_millis(5) * (tries - MEDIUM) as u32,
        )
    };
    if slept_before >= BUSY_TIMEOUT {
        return false;
    }
    std::thread::sleep(nap);
    true
}

/// Quotes an identifier for SQL (`Deal` -> `"Deal"`).
pub(super) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string literal for SQL (`it's` -> `'it''s'`).
pub(super) fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The tables that exist in the database file (if it exists; it is opened read-only and never
/// created) or that `schema_sql` creates: what `herald check` checks notification scripts against.
pub fn known_tables(
    db: &Path,
    schema_sql: Option<&str>,
) -> Result<std::collections::BTreeSet<String>> {
    fn tables_of(conn: &Connection) -> Result<Vec<String>> {
        let mut stmt = conn.prepare("SELECT name FROM sqlite_schema WHERE type = 'table'")?;
        let names = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(names)
    }
    let mut tables = std::collections::BTreeSet::new();
    if db.exists() {
        let conn = open_connection(db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        tables.extend(tables_of(&conn)?);
    }
    if let Some(sql) = schema_sql {
        let scratch = Connection::open_in_memory()?;
        scratch.execute_batch(sql).map_err(|e| StoreError::Schema {
            file: "schema.sql".into(),
            message: e.to_string(),
        })?;
        tables.extend(tables_of(&scratch)?);
    }
    Ok(tables)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_transactions(store: &Sqlite, count: usize) {
        for _ in 0..count {
            store
                .writer()
                .execute(
                    "INSERT INTO herald_state (key, value)
                     VALUES ('test.' || (SELECT count(*) FROM herald_state), 0)",
                    [],
                )
                .unwrap();
        }
    }

    /// Frames in the WAL, seen from another connection (a passive checkpoint copies, never waits).
    fn wal_frames(path: &Path) -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
            .unwrap()
    }

    #[test]
    fn the_wal_starts_over_while_herald_keeps_writing() {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
        let dir = tempfile::tempdir().unwrap();
        let store = Sqlite::open(&dir.path().join("t.db")).unwrap();
        // The writer goes on until the WAL started over while it wrote (at most 20,000 commits).
        let (seen, writing, written) = (
            AtomicBool::new(false),
            AtomicBool::new(true),
            AtomicUsize::new(0),
        );
        std::thread::scope(|scope| {
            scope.spawn(|| {
                while !seen.load(SeqCst) && written.load(SeqCst) < 20_000 {
                    write_transactions(&store, 1);
                    written.fetch_add(1, SeqCst);
                }
                writing.store(false, SeqCst);
            });
            while writing.load(SeqCst) {
                let before = written.load(SeqCst);
                let started_over = store.checkpoint_resetting_past(100).unwrap();
                if started_over && before > 0 && writing.load(SeqCst) {
                    seen.store(true, SeqCst);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        assert!(
            seen.load(SeqCst),
            "{} commits and the WAL never started over",
            written.load(SeqCst)
        );
    }

    #[test]
    fn an_idle_wal_is_made_to_start_over_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Sqlite::open(&dir.path().join("t.db")).unwrap();
        write_transactions(&store, 300);
        assert!(store.checkpoint_resetting_past(200).unwrap());
        assert!(!store.checkpoint_resetting_past(200).unwrap());
        assert!(
            wal_frames(store.path()) >= 200,
            "no commit yet, so not started over yet"
        );
    }

    #[test]
    fn a_reader_in_the_wal_delays_the_restart_without_failing_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let store = Sqlite::open(&dir.path().join("t.db")).unwrap();
        write_transactions(&store, 300);
        let reader = Connection::open(store.path()).unwrap();
        reader
            .execute_batch("BEGIN; SELECT count(*) FROM herald_state;")
            .unwrap();
        write_transactions(&store, 300);
        assert!(!store.checkpoint_resetting_past(200).unwrap());
        let frames = wal_frames(store.path());
        write_transactions(&store, 1);
        assert!(
            wal_frames(store.path()) > frames,
            "the reader kept the WAL going"
        );
        reader.execute_batch("COMMIT").unwrap();
        assert!(store.checkpoint_resetting_past(200).unwrap());
        write_transactions(&store, 1);
        assert!(wal_frames(store.path()) < 10, "started over");
    }
}
