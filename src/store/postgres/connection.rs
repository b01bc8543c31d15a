//! herald's connections to PostgreSQL: the pool's (herald's schema on the `search_path`),
//! one connection type for every client herald holds, and herald's statements prepared once per
//! connection (`Queries`, for a connection and for a transaction on it alike).
//!
//! The `postgres` client runs a small runtime of its own and blocks on it, and it blocks again when
//! it is dropped (to close the connection). herald calls its store from blocking threads only, but a
//! store can be dropped anywhere, for instance on a runtime worker when the server shuts down; a
//! client dropped there would panic. `PgConn` closes such a client on a thread of its own.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use postgres::types::ToSql;
use postgres::{Client, Row, Statement, Transaction};

use super::quote_ident;
use super::tls::Login;

/// A client that can be dropped anywhere, with the statements prepared on it.
pub(crate) struct PgConn {
    client: Option<Client>,
    statements: Statements,
    /// When the server last answered on it, as far as the pool knows: made, tested, or given back
    /// open after use.
    answered_at: Instant,
}

/// A pooled connection the server answered on more recently than this is handed out untested:
/// under load connections go round every few milliseconds, and an empty query at each checkout
/// was several round trips in every batch of the change log's consumer. One that died within
/// this window fails the operation that takes it, which its loop retries on a new connection.
const TRUSTED_FOR: Duration = Duration::from_millis(500);

/// herald's statements by their text. Each is parsed and planned once per connection rather than
/// at every call (a round trip and a plan saved each time); the set is bounded, for text made up
/// at run time.
#[derive(Default)]
pub(crate) struct Statements(RefCell<HashMap<String, Statement>>);

const MAX_STATEMENTS: usize = 256;

impl Statements {
    fn get(
        &self,
        sql: &str,
        prepare: impl FnOnce(&str) -> Result<Statement, postgres::Error>,
    ) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.0.borrow().get(sql) {
            return Ok(statement.clone());
        }
        let statement = prepare(sql)?;
        let mut statements = self.0.borrow_mut();
        if statements.len() >= MAX_STATEMENTS {
            statements.clear();
        }
        statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }
}

impl PgConn {
    pub(crate) fn new(client: Client) -> PgConn {
        PgConn {
            client: Some(client),
            statements: Statements::default(),
            answered_at: Instant::now(),
        }
    }

    /// Asks the server for an empty answer, unless it answered on this connection within
    /// `window`.
    pub(crate) fn check_alive(&mut self, window: Duration) -> Result<(), postgres::Error> {
        if self.answered_at.elapsed() < window {
            return Ok(());
        }
        Client::simple_query(self, "")?;
        self.answered_at = Instant::now();
        Ok(())
    }

    /// A transaction whose statements are the connection's prepared ones.
    pub(crate) fn transaction(&mut self) -> Result<Tx<'_>, postgres::Error> {
        let PgConn {
            client, statements, ..
        } = self;
        let tx = client
            .as_mut()
            .expect("present until dropped")
            .transaction()?;
        Ok(Tx { tx, statements })
    }
}

/// A transaction on a `PgConn`.
pub(crate) struct Tx<'c> {
    tx: Transaction<'c>,
    statements: &'c Statements,
}

impl Tx<'_> {
    pub(crate) fn commit(self) -> Result<(), postgres::Error> {
        self.tx.commit()
    }

    pub(crate) fn rollback(self) -> Result<(), postgres::Error> {
        self.tx.rollback()
    }

    /// SQL run as it is (several statements, DDL): never prepared.
    pub(crate) fn batch_execute(&mut self, sql: &str) -> Result<(), postgres::Error> {
        self.tx.batch_execute(sql)
    }
}

/// Queries with herald's statements prepared once per connection, on a connection or in a
/// transaction.
pub(crate) trait Queries {
    fn prepared(&mut self, sql: &str) -> Result<Statement, postgres::Error>;
    fn run_query(
        &mut self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, postgres::Error>;
    fn run_execute(
        &mut self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, postgres::Error>;

    fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, postgres::Error> {
        let statement = self.prepared(sql)?;
        self.run_query(&statement, params)
    }

    fn query_opt(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, postgres::Error> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    fn query_one(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, postgres::Error> {
        let statement = self.prepared(sql)?;
        self.run_query_one(&statement, params)
    }

    fn run_query_one(
        &mut self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, postgres::Error>;

    fn execute(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, postgres::Error> {
        let statement = self.prepared(sql)?;
        self.run_execute(&statement, params)
    }
}

impl Queries for PgConn {
    fn prepared(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        let PgConn {
            client, statements, ..
        } = self;
        let client = client.as_mut().expect("present until dropped");
        statements.get(sql, |sql| client.prepare(sql))
    }

    fn run_query(
        &mut self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, postgres::Error> {
        Client::query(self, statement, params)
    }

    fn run_query_one(
        &mut self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, postgres::Error> {
        Client::query_one(self, statement, params)
    }

    fn run_execute(
        &mut self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, postgres::Error> {
        Client::execute(self, statement, params)
    }
}

impl Queries for Tx<'_> {
    fn prepared(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        let Tx { tx, statements } = self;
        statements.get(sql, |sql| tx.prepare(sql))
    }

    fn run_query(
        &mut self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, postgres::Error> {
        self.tx.query(statement, params)
    }

    fn run_query_one(
        &mut self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, postgres::Error> {
        self.tx.query_one(statement, params)
    }

    fn run_execute(
        &mut self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, postgres::Error> {
        self.tx.execute(statement, params)
    }
}

impl Deref for PgConn {
    type Target = Client;

    fn deref(&self) -> &Client {
        self.client.as_ref().expect("present until dropped")
    }
}

impl DerefMut for PgConn {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("present until dropped")
    }
}

impl Drop for PgConn {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            // Possibly a runtime's worker: closing blocks, so it happens elsewhere.
            let closed = std::thread::Builder::new()
                .name("herald-pg-close".into())
                .spawn(move || drop(client));
            if let Err(e) = closed {
                tracing::debug!("a PostgreSQL connection was left to the server to close: {e}");
            }
        } else {
            drop(client);
        }
    }
}

/// How the pool opens connections: each with herald's schema on its `search_path`, after the
/// application's, so that herald's SQL names its tables as on SQLite (`herald_hooks`; no
/// application table may be named `herald_*`), finds the application's where the application
/// does, and creates what the application's schema script creates where the application would.
#[derive(Clone)]
pub(super) struct Manager {
    pub(super) login: Login,
    pub(super) schema: String,
}

impl Manager {
    /// A connection as the pool makes them, for uses of its own (the change feed's, which listens).
    pub(super) fn open(&self) -> Result<PgConn, postgres::Error> {
        let mut client = PgConn::new(self.login.connect()?);
        let current: String = Client::query_one(&mut client, "SHOW search_path", &[])?.get(0);
        // Each execution is planned for the tables as they are: a generic plan made while herald's
        // tables were empty (a sequential scan is cheapest then) would be kept while they grow to
        // millions of rows. Statements are still parsed once (`Statements`).
        client.batch_execute(&format!(
            "SET search_path TO {current}, {}; SET plan_cache_mode = force_custom_plan",
            quote_ident(&self.schema)
        ))?;
        Ok(client)
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = PgConn;
    type Error = postgres::Error;

    fn connect(&self) -> Result<PgConn, postgres::Error> {
        self.open()
    }

    fn is_valid(&self, client: &mut PgConn) -> Result<(), postgres::Error> {
        client.check_alive(TRUSTED_FOR)
    }

    /// Asked as a connection comes back: open still means the server answered its last use
    /// (a cut or a server gone closes the client as the failed call returns).
    fn has_broken(&self, client: &mut PgConn) -> bool {
        let broken = client.is_closed();
        if !broken {
            client.answered_at = Instant::now();
        }
        broken
    }
}
