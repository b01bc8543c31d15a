//! Scripts' queries on PostgreSQL. Read-only by construction, three times over:
//! - the connection logs in as the scripts' role, which may read the application's tables and has
//!   no right at all on herald's schema and no role to `SET ROLE` to (see `migrations.rs`);
//! - every query runs in a read-only transaction (`default_transaction_read_only` for the
//!   session, `READ ONLY` for a snapshot), so even a table the role could write stays unwritten;
//! - a query is one statement (the extended protocol takes no more), and only one that reads:
//!   `SELECT`, `WITH`, `VALUES` or `TABLE`, so a script cannot `SET`, `BEGIN` or `COMMIT` its way
//!   out of the other two.
//!
//! Time: `statement_timeout` is the scripts' budget, and a watchdog cancels a query as soon as the
//! run's own deadline passes (the budget covers the script and all its queries).

use std::cell::RefCell;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::collections::{HashMap, HashSet};

use postgres::{CancelToken, Client, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::connection::PgConn;
use super::placeholders::{numbered_placeholders, with_parameter_as};
use super::tls::Login;
use super::values::ScriptValue;
use super::{describe, Result, StoreError};
use crate::store::{Cell, QueryError, RowLimit, Rows, ScriptDb};

pub(super) struct ScriptConnection {
    login: Login,
    budget: Duration,
    client: RefCell<Option<PgConn>>,
    /// Scripts run the same few queries for every change: each is prepared once per connection.
    prepared: RefCell<HashMap<String, Prepared>>,
    /// Queries that failed when asked ahead (`query_ahead`): each is asked alone from then on.
    not_ahead: RefCell<HashSet<String>>,
    /// A snapshot was asked for: the next query begins it.
    snapshot_wanted: std::cell::Cell<bool>,
    /// A snapshot transaction is open.
    in_snapshot: std::cell::Cell<bool>,
    watchdog: Watchdog,
}

impl ScriptConnection {
    pub(super) fn new(login: Login, budget: Duration) -> Self {
        ScriptConnection {
            watchdog: Watchdog::new(login.tls()),
            login,
            budget,
            client: RefCell::new(None),
            prepared: RefCell::default(),
            not_ahead: RefCell::default(),
            snapshot_wanted: std::cell::Cell::new(false),
            in_snapshot: std::cell::Cell::new(false),
        }
    }

    /// The connection, made on first use: the admin pages open a handle per request and may
    /// never query.
    fn connected(&self) -> Result<std::cell::RefMut<'_, Client>> {
        let mut slot = self.client.borrow_mut();
        if slot.as_ref().is_none_or(|c| c.is_closed()) {
            let mut client = PgConn::new(self.login.connect().map_err(|e| {
                StoreError::Connect(format!(
                    "cannot connect as the scripts' role {}: {}",
                    self.login.config.get_user().unwrap_or("?"),
                    describe(&e)
                ))
            })?);
            client.batch_execute(&format!(
                "SET default_transaction_read_only = on; SET statement_timeout = {}",
                self.budget.as_millis().max(1)
            ))?;
            *slot = Some(client);
            self.in_snapshot.set(false);
            self.prepared.borrow_mut().clear();
        }
        Ok(std::cell::RefMut::map(slot, |c| {
            &mut **c.as_mut().expect("connected above")
        }))
    }

    /// Drops the connection; the next query makes a new one, in a fresh snapshot if the batch
    /// reads one.
    fn forget_connection(&self) {
        self.client.borrow_mut().take();
        if self.in_snapshot.replace(false) {
            self.snapshot_wanted.set(true);
        }
    }

    /// After a failed query PostgreSQL refuses everything until the transaction ends: end it, so
    /// that the batch's next scripts read on (in a fresh snapshot).
    fn recover(&self, client: &mut Client) {
        if self.in_snapshot.replace(false) {
            let _ = client.batch_execute("ROLLBACK");
            self.snapshot_wanted.set(true);
        }
    }

    fn run(&self, sql: &str, params: &[Cell], limit: RowLimit) -> Result<Rows, QueryError> {
        if !is_a_read(sql) {
            return Err(QueryError::NotAReadOnlyStatement);
        }
        let sql = numbered_placeholders(sql);
        let params: Vec<&(dyn postgres::types::ToSql + Sync)> =
            params.iter().map(|p| p as _).collect();
        let started = Instant::now();
        let fetched = match self.fetch(&sql, &params, false) {
            // The server restarted, or cut the connection: once more, on a new one.
            Err(Fetch::Closed(_)) => {
                self.client.borrow_mut().take();
                self.fetch(&sql, &params, false)
            }
            other => other,
        };
        if fetched.is_ok() {
            if let Some(prepared) = self.prepared.borrow_mut().get_mut(sql.as_ref()) {
                prepared.alone_took = Some(started.elapsed());
            }
        }
        let rows = fetched.map_err(|failed| match failed {
            Fetch::Closed(message) => QueryError::Unavailable(message),
            Fetch::Failed(error) => error,
        })?;
        let columns: Vec<String> = match rows.first() {
            Some(row) => row.columns().iter().map(|c| c.name().to_owned()).collect(),
            None => Vec::new(),
        };
        let mut values = Vec::with_capacity(rows.len().min(1024));
        for row in &rows {
            if let RowLimit::AtMost(max_rows) = limit {
                if values.len() == max_rows {
                    return Err(QueryError::TooManyRows(max_rows));
                }
            }
            values.push(cells_of(row, &columns, 0)?);
            if limit == RowLimit::First {
                break;
            }
        }
        Ok(Rows { columns, values })
    }

    /// `sql` is asked alone from now on: asked ahead it failed, or would hold too many rows.
    fn never_ahead(&self, sql: &str) -> Option<Vec<Option<Rows>>> {
        let mut not_ahead = self.not_ahead.borrow_mut();
        if not_ahead.len() >= MAX_PREPARED {
            not_ahead.clear();
        }
        not_ahead.insert(sql.to_owned());
        None
    }
}

/// The script values of `row`'s columns named `columns`, from column `offset` on.
fn cells_of(
    row: &postgres::Row,
    columns: &[String],
    offset: usize,
) -> Result<Vec<Cell>, QueryError> {
    let mut cells = Vec::with_capacity(columns.len());
    for (i, name) in columns.iter().enumerate() {
        let value: ScriptValue = row
            .try_get(offset + i)
            .map_err(|e| QueryError::Database(format!("column {name}: {}", source_of(&e))))?;
        cells.push(value.0);
    }
    Ok(cells)
}

/// Why a query brought no rows.
enum Fetch {
    /// The connection is gone: worth one more try on a new one.
    Closed(String),
    Failed(QueryError),
}

impl ScriptConnection {
    /// The rows of one query, in the snapshot if one is wanted; a statement the application's
    /// schema change made stale is prepared again. A `guarded` query that fails leaves the
    /// snapshot as it was (`BEGIN_SNAPSHOT`'s savepoint); any other failure ends it, and the next
    /// query reads a new one.
    fn fetch(
        &self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
        guarded: bool,
    ) -> Result<Vec<postgres::Row>, Fetch> {
        let closed_or = |client: &Client, e: &postgres::Error, failed: QueryError| {
            if e.is_closed() || client.is_closed() {
                Fetch::Closed(describe(e))
            } else {
                Fetch::Failed(failed)
            }
        };
        let mut client = self
            .connected()
            .map_err(|e| Fetch::Failed(QueryError::Unavailable(e.to_string())))?;
        if self.snapshot_wanted.get() && !self.in_snapshot.get() {
            if let Err(e) = client.batch_execute(BEGIN_SNAPSHOT) {
                // A connection that cannot begin is in a state of its own (a transaction left
                // failed): the next query gets a new one.
                let failed = closed_or(&client, &e, QueryError::Database(describe(&e)));
                drop(client);
                self.forget_connection();
                return Err(failed);
            }
            self.in_snapshot.set(true);
        }
        let guarded = guarded && self.in_snapshot.get();
        self.watchdog.watch(client.cancel_token());
        let mut result = self.prepared_query(&mut client, sql, params);
        if result.as_ref().is_err_and(is_stale_plan) {
            // The application changed a table the statement reads (a column added): prepare it
            // again. Inside a snapshot the failure ended the transaction, so it begins anew.
            self.prepared.borrow_mut().clear();
            self.recover(&mut client);
            if self.snapshot_wanted.get()
                && !self.in_snapshot.get()
                && client.batch_execute(BEGIN_SNAPSHOT).is_ok()
            {
                self.in_snapshot.set(true);
            }
            result = self.prepared_query(&mut client, sql, params);
        }
        let cancelled = self.watchdog.unwatch();
        if cancelled {
            // The cancel reaches the server on a connection of its own, maybe after the query
            // ended (the server's statement_timeout stops it at the same budget): it would stop
            // whatever this connection ran next, another change's query. A connection a cancel
            // was sent for is not used again. The run is past its deadline either way.
            drop(client);
            self.forget_connection();
            return Err(Fetch::Failed(QueryError::Database(
                "query interrupted: the script ran out of its time budget".to_owned(),
            )));
        }
        result.map_err(|e| {
            let failed = closed_or(&client, &e, QueryError::Database(describe_for_scripts(&e)));
            if matches!(failed, Fetch::Failed(_))
                && !(guarded
                    && client
                        .batch_execute("ROLLBACK TO SAVEPOINT herald_guard")
                        .is_ok())
            {
                self.recover(&mut client);
            }
            failed
        })
    }

    fn prepared_query(
        &self,
        client: &mut Client,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> std::result::Result<Vec<postgres::Row>, postgres::Error> {
        let cached = self.prepared.borrow().get(sql).map(|p| p.statement.clone());
        let statement = match cached {
            Some(statement) => statement,
            None => {
                let statement = client.prepare(sql)?;
                let mut prepared = self.prepared.borrow_mut();
                if prepared.len() >= MAX_PREPARED {
                    prepared.clear();
                }
                prepared.insert(
                    sql.to_owned(),
                    Prepared {
                        statement: statement.clone(),
                        alone_took: None,
                    },
                );
                statement
            }
        };
        client.query(&statement, params)
    }
}

/// Begins a snapshot, and the savepoint a `guarded` query that fails rolls back to: the
/// transaction goes on in the same snapshot, at no round trip of its own.
const BEGIN_SNAPSHOT: &str =
    "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SAVEPOINT herald_guard";

/// A statement prepared on the connection.
struct Prepared {
    statement: Statement,
    /// How long it took when last asked alone (`run`): what asking it ahead for many rows may
    /// cost. `None` until it was.
    alone_took: Option<Duration>,
}

/// Statements kept prepared per connection (each asked ahead is a second one).
const MAX_PREPARED: usize = 128;

/// The most rows one query asked ahead may bring, for all its rows together.
const MAX_ROWS_AHEAD: usize = 20_000;

/// A prepared statement whose tables changed shape since: PostgreSQL asks for it again.
fn is_stale_plan(error: &postgres::Error) -> bool {
    error.code() == Some(&postgres::error::SqlState::FEATURE_NOT_SUPPORTED)
        && describe(error).contains("cached plan")
}

impl ScriptDb for ScriptConnection {
    /// The next queries read one snapshot, taken at the first of them, until `end_snapshot`.
    fn begin_snapshot(&self) -> Result<()> {
        self.snapshot_wanted.set(true);
        Ok(())
    }

    /// Begins the snapshot now (the other handles must find it there) and exports it.
    fn share_snapshot(&self) -> Result<Option<String>> {
        let mut client = self.connected()?;
        if self.in_snapshot.replace(false) {
            client.batch_execute("ROLLBACK")?;
        }
        // A snapshot is exported before the savepoint: not from a subtransaction.
        client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
        self.in_snapshot.set(true);
        let exported =
            client.simple_query("SELECT pg_export_snapshot(); SAVEPOINT herald_guard")?;
        let id = exported.iter().find_map(|message| match message {
            postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        });
        Ok(id)
    }

    fn join_snapshot(&self, shared: &str) -> Result<()> {
        self.snapshot_wanted.set(true);
        let mut client = self.connected()?;
        if self.in_snapshot.get() {
            client.batch_execute("ROLLBACK")?;
            self.in_snapshot.set(false);
        }
        client.batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}; \
             SAVEPOINT herald_guard",
            super::quote_literal(shared)
        ))?;
        self.in_snapshot.set(true);
        Ok(())
    }

    /// Ends the snapshot, and lets go of any advisory lock a script took.
    fn end_snapshot(&self) -> Result<()> {
        self.snapshot_wanted.set(false);
        if !self.in_snapshot.replace(false) {
            return Ok(());
        }
        let mut client = self.connected()?;
        client.batch_execute("COMMIT; SELECT pg_advisory_unlock_all()")?;
        Ok(())
    }

    fn set_interrupt_check(&self, interrupted: Box<dyn FnMut() -> bool + Send>) {
        self.watchdog.set_check(interrupted);
    }

    /// Each query is a round trip: asking many in one saves all but one.
    fn asks_ahead(&self) -> bool {
        true
    }

    /// The statement as a lateral join over the ids, each id's rows numbered in
    /// the order the statement gives them and cut past `limit`, so that one round trip answers
    /// what the scripts would have asked one by one, in the same snapshot. Rows a statement
    /// without `ORDER BY` gives in no set order may come in another order than asked alone.
    /// Only in a snapshot: outside one, the answers asked ahead could differ from the ones the
    /// scripts would read when they ask.
    fn query_ahead(
        &self,
        sql: &str,
        ids: &[i64],
        limit: RowLimit,
        time: Duration,
    ) -> Option<Vec<Option<Rows>>> {
        if !self.snapshot_wanted.get()
            || ids.len() < 2
            || !is_a_read(sql)
            || self.not_ahead.borrow().contains(sql)
        {
            return None;
        }
        let numbered = numbered_placeholders(sql);
        // Asked alone once on this connection first: its one parameter's type is known then (the
        // ids are cast to it, so that each id means what it means asked alone), a statement that
        // cannot run fails there, with its own message, and how long it took is known. Reckoned
        // from that (an estimate: another row may cost more), the rows asked ahead take a quarter
        // of what is left of the asking script's budget at most.
        let (parameter, took) = match self.prepared.borrow().get(numbered.as_ref())? {
            Prepared {
                statement,
                alone_took: Some(took),
            } => match statement.params() {
                [parameter] => (
                    format!(
                        "(\"herald ahead\".id::{}.{})",
                        super::quote_ident(parameter.schema()),
                        super::quote_ident(parameter.name())
                    ),
                    *took,
                ),
                _ => return None,
            },
            _ => return None,
        };
        let inner = with_parameter_as(&numbered, &parameter)?;
        let affordable = self.budget.min(time).as_micros() / 4 / took.as_micros().max(1);
        let ids = &ids[..ids
            .len()
            .min(usize::try_from(affordable).unwrap_or(usize::MAX))];
        if ids.len() < 2 {
            return None;
        }
        let per_id = match limit {
            RowLimit::First => 1,
            RowLimit::AtMost(max) => max + 1,
        };
        // The newline ends a `--` comment the statement may end with.
        let batched = format!(
            "SELECT \"herald ahead\".n, \"herald rows\".* \
             FROM unnest($1::int8[]) WITH ORDINALITY AS \"herald ahead\"(id, n) \
             CROSS JOIN LATERAL (SELECT \"herald row\".*, \
             row_number() OVER () AS \"herald row number\" \
             FROM ({inner}\n) AS \"herald row\" LIMIT {per_id}) AS \"herald rows\" \
             ORDER BY \"herald ahead\".n, \"herald rows\".\"herald row number\" \
             LIMIT {}",
            MAX_ROWS_AHEAD + 1
        );
        // Under a savepoint: a statement that fails for a row ahead (a parameter that is not a
        // number, a division by zero in another row) must not cost the snapshot the batch reads.
        let rows = match self.fetch(&batched, &[&ids], true) {
            Ok(rows) if rows.len() <= MAX_ROWS_AHEAD => rows,
            Err(Fetch::Closed(_) | Fetch::Failed(QueryError::Unavailable(_))) => return None,
            _ => return self.never_ahead(sql),
        };
        let mut answers: Vec<Rows> = vec![Rows::default(); ids.len()];
        let Some(first) = rows.first() else {
            return Some(answers.into_iter().map(Some).collect());
        };
        // Between the id's number and the rows' own.
        let width = first.columns().len() - 2;
        let columns: Vec<String> = first.columns()[1..=width]
            .iter()
            .map(|c| c.name().to_owned())
            .collect();
        for row in &rows {
            let (Ok(n), Ok(cells)) = (row.try_get::<_, i64>(0), cells_of(row, &columns, 1)) else {
                return self.never_ahead(sql);
            };
            let answer = answers.get_mut(usize::try_from(n).ok()?.checked_sub(1)?)?;
            // As asked alone: an answer without rows names no columns.
            if answer.values.is_empty() {
                answer.columns = columns.clone();
            }
            answer.values.push(cells);
        }
        Some(
            answers
                .into_iter()
                .map(|answer| match limit {
                    RowLimit::AtMost(max) if answer.values.len() > max => None,
                    _ => Some(answer),
                })
                .collect(),
        )
    }

    fn query(&self, sql: &str, params: &[Cell], limit: RowLimit) -> Result<Rows, QueryError> {
        let rows = self.run(sql, params, limit);
        if !self.in_snapshot.get() && sql.to_ascii_lowercase().contains("advisory") {
            if let Ok(mut client) = self.connected() {
                let _ = client.batch_execute("SELECT pg_advisory_unlock_all()");
            }
        }
        rows
    }
}

/// Whether a statement reads: its first word (comments and parentheses aside) is one of those
/// that cannot change anything by themselves. Writes inside them (`WITH d AS (DELETE ...)`) meet
/// the read-only transaction and the role's missing rights.
fn is_a_read(sql: &str) -> bool {
    let mut rest = sql.trim_start();
    loop {
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, r)| r).trim_start();
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.split_once("*/").map_or("", |(_, r)| r).trim_start();
        } else if let Some(after) = rest.strip_prefix('(') {
            rest = after.trim_start();
        } else {
            break;
        }
    }
    let word: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_lowercase();
    matches!(word.as_str(), "select" | "with" | "values" | "table")
}

/// The server's message, with a word for the refusals scripts meet.
fn describe_for_scripts(error: &postgres::Error) -> String {
    use postgres::error::SqlState;
    let text = describe(error);
    match error.code() {
        Some(c) if *c == SqlState::INSUFFICIENT_PRIVILEGE => format!(
            "{text}: scripts may only read the application's tables (no writes, no herald tables)"
        ),
        Some(c) if *c == SqlState::READ_ONLY_SQL_TRANSACTION => {
            format!("{text}: only reads are allowed")
        }
        Some(c) if *c == SqlState::QUERY_CANCELED => {
            "query interrupted: the script ran out of its time budget".into()
        }
        _ => text,
    }
}

/// What went wrong reading a column, without the client's wrapping.
fn source_of(error: &postgres::Error) -> String {
    std::error::Error::source(error).map_or_else(|| error.to_string(), |s| s.to_string())
}

/// Cancels the query in flight once the run's interrupt check says so. A thread per connection,
/// started by its first query, that looks every `WATCH_EVERY`: a query only leaves its cancel
/// token where the thread can find it, so that queries (many per change) cost no wake-up of
/// another thread. A query that outlives the run's deadline is cut within `WATCH_EVERY`, and
/// `statement_timeout` cuts any one query at the whole budget whatever happens.
struct Watchdog {
    shared: Arc<Mutex<Watch>>,
    /// How a cancel connects: as the scripts' connections do.
    tls: MakeRustlsConnect,
    started: std::cell::Cell<bool>,
}

#[derive(Default)]
struct Watch {
    check: Option<Box<dyn FnMut() -> bool + Send>>,
    /// The query in flight, to cancel.
    running: Option<CancelToken>,
    cancelled: bool,
    closed: bool,
}

/// How often a running query's deadline is looked at.
const WATCH_EVERY: Duration = Duration::from_millis(20);

impl Watchdog {
    fn new(tls: MakeRustlsConnect) -> Watchdog {
        Watchdog {
            shared: Arc::default(),
            tls,
            started: std::cell::Cell::new(false),
        }
    }

    fn start(&self) {
        if self.started.replace(true) {
            return;
        }
        let theirs = self.shared.clone();
        let tls = self.tls.clone();
        let spawned = std::thread::Builder::new()
            .name("herald-script-watchdog".into())
            .spawn(move || loop {
                std::thread::sleep(WATCH_EVERY);
                let mut watch = theirs.lock().unwrap_or_else(|p| p.into_inner());
                if watch.closed {
                    return;
                }
                if watch.running.is_none() {
                    continue;
                }
                if watch.check.as_mut().is_some_and(|check| check()) {
                    // Under the lock, so that no next query starts before the cancel is sent.
                    if let Some(token) = watch.running.take() {
                        watch.cancelled = true;
                        let _ = token.cancel_query(tls.clone());
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("no watchdog for scripts' queries (statement_timeout still holds): {e}");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Watch> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_check(&self, check: Box<dyn FnMut() -> bool + Send>) {
        self.lock().check = Some(check);
    }

    fn watch(&self, token: CancelToken) {
        self.start();
        let mut watch = self.lock();
        watch.running = Some(token);
        watch.cancelled = false;
    }

    /// Whether the query was cancelled.
    fn unwatch(&self) -> bool {
        let mut watch = self.lock();
        watch.running = None;
        std::mem::take(&mut watch.cancelled)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.lock().closed = true;
    }
}

#[cfg(test)]
mod tests {
    use super::is_a_read;

    #[test]
    fn only_reading_statements_pass() {
        for sql in [
            "SELECT 1",
            "  select * from t",
            "-- hi\nWITH x AS (SELECT 1) SELECT * FROM x",
            "/* c */ (SELECT 1)",
            "VALUES (1)",
            "TABLE t",
        ] {
            assert!(is_a_read(sql), "{sql}");
        }
        for sql in [
            "SET ROLE herald",
            "BEGIN",
            "COMMIT",
            "DELETE FROM t",
            "COPY t TO STDOUT",
            "LOCK TABLE t",
            "SET statement_timeout = 0",
            "",
        ] {
            assert!(!is_a_read(sql), "{sql}");
        }
    }
}
