//! herald's connections to PostgreSQL: the pool's (herald's schema on the `search_path`),
//! and one connection type for every client herald holds.
//!
//! The `postgres` client runs a small runtime of its own and blocks on it, and it blocks again when
//! it is dropped (to close the connection). herald calls its store from blocking threads only, but a
//! store can be dropped anywhere, for instance on a runtime worker when the server shuts down; a
//! client dropped there would panic. `PgConn` closes such a client on a thread of its own.

use std::ops::{Deref, DerefMut};

use postgres::{Client, NoTls};

use super::quote_ident;

/// A client that can be dropped anywhere.
pub(crate) struct PgConn(Option<Client>);

impl PgConn {
    pub(crate) fn new(client: Client) -> PgConn {
        PgConn(Some(client))
    }
}

impl Deref for PgConn {
    type Target = Client;

    fn deref(&self) -> &Client {
        self.0.as_ref().expect("present until dropped")
    }
}

impl DerefMut for PgConn {
    fn deref_mut(&mut self) -> &mut Client {
        self.0.as_mut().expect("present until dropped")
    }
}

impl Drop for PgConn {
    fn drop(&mut self) {
        let Some(client) = self.0.take() else {
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
#[derive(Debug, Clone)]
pub(super) struct Manager {
    pub(super) config: postgres::Config,
    pub(super) schema: String,
}

impl Manager {
    /// A connection as the pool makes them, for uses of its own (the change feed's, which listens).
    pub(super) fn open(&self) -> Result<PgConn, postgres::Error> {
        let mut client = PgConn::new(self.config.connect(NoTls)?);
        let current: String = client.query_one("SHOW search_path", &[])?.get(0);
        client.batch_execute(&format!(
            "SET search_path TO {current}, {}",
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
        client.simple_query("").map(|_| ())
    }

    fn has_broken(&self, client: &mut PgConn) -> bool {
        client.is_closed()
    }
}
