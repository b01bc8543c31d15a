//! The PostgreSQL backend: the application's tables wherever the connection's `search_path` finds
//! them, herald's own in a schema of their own (`herald` by default), with the same table names as
//! on SQLite (`herald.herald_hooks`), so that both backends' SQL reads alike.
//!
//! - `mod.rs` (this file): the handle, its connection pool, the write helpers, `Operations`.
//! - `migrations.rs`: herald's schema and tables, versioned; the scripts' read-only role.
//! - `changes.rs` (`ChangeLog`, `ChangeFeed`): capture by triggers, consumption by deletion.
//! - `hooks.rs` (`Hooks`), `history.rs` (`History`), `outbox.rs` (`Outbox`).
//! - `script_db.rs` (`ScriptDb`): scripts' queries, as a role that can only read the
//!   application's tables, in read-only transactions; `values.rs` maps PostgreSQL's values to
//!   scripts' and back; `placeholders.rs` turns SQLite's `?` into `$1`.
//!
//! Every call blocks (the `postgres` crate runs each connection on a small runtime of its own),
//! which suits the seam: herald calls its store from blocking threads only.

mod backfills;
mod changes;
mod claims;
mod connection;
mod history;
mod hooks;
mod migrations;
mod nodes;
mod outbox;
mod placeholders;
mod script_db;
mod sign_ins;
mod signals;
mod tls;
mod values;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Operations, Result, ScriptDb, Secrets, StoreError};
use crate::config::PostgresSettings;
use crate::database::PostgresUrl;
use connection::{Manager, PgConn, Queries, Tx};
use tls::Login;

pub use placeholders::numbered_placeholders;

type Pool = r2d2::Pool<Manager>;
type Pooled = r2d2::PooledConnection<Manager>;

/// How long a connection attempt, or a wait for a free connection of the pool, lasts at most.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long `/readyz` waits for a connection.
const PING_WAIT: Duration = Duration::from_secs(1);

/// The notification channel of new changes in the log (with the schema's name: two herald
/// schemas in one database do not wake each other).
fn changes_channel(schema: &str) -> String {
    format!("{schema}_changes")
}

/// What opening a PostgreSQL store takes.
#[derive(Clone)]
pub struct PostgresOptions {
    pub url: PostgresUrl,
    pub settings: PostgresSettings,
    pub secrets: Secrets,
    /// Scripts' wall-clock budget: their connections' `statement_timeout`.
    pub script_time_budget: Duration,
}

/// The PostgreSQL backend. Cheap to clone; every method blocks.
#[derive(Clone)]
pub struct Postgres {
    inner: Arc<Inner>,
}

struct Inner {
    url: PostgresUrl,
    schema: String,
    /// How herald's connections are made (the pool's, and the change feed's own).
    manager: Manager,
    pool: Pool,
    secrets: Secrets,
    /// Who holds a lease: this process, for as long as it runs.
    node: String,
    /// The connection holding this process's presence lock (see `nodes.rs`), once taken.
    presence: Mutex<Option<PgConn>>,
    /// How scripts' connections log in: as the read-only role.
    script_login: Login,
    script_time_budget: Duration,
    takeover: nodes::Takeover,
    /// herald's writes that last failed, by what they were doing; cleared when one succeeds.
    write_problems: Mutex<BTreeMap<&'static str, String>>,
}

impl Postgres {
    /// Connects, creates or migrates herald's schema, and makes sure scripts have their read-only
    /// role. A server that cannot be reached, a wrong password or a missing database is one line
    /// that names what is wrong (never the password).
    pub fn open(options: PostgresOptions) -> Result<Postgres> {
        let PostgresOptions {
            url,
            settings,
            secrets,
            script_time_budget,
        } = options;
        let mut config = url
            .config()
            .map_err(|e| StoreError::Connect(format!("{url}: {}", describe(&e))))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.application_name("herald");
        let login = Login::new(config, &url.tls())?;
        // One connection first, for the clearest error: the pool would only say it timed out.
        let mut first = PgConn::new(login.connect().map_err(|e| {
            StoreError::Connect(format!("cannot connect to {url}: {}", describe(&e)))
        })?);
        migrations::migrate(&mut first, &settings.schema)?;
        migrations::check_key(&mut first, &settings.schema, &secrets)?;
        let script_login = match &settings.script_url {
            Some(script_url) => {
                let mut script_config = script_url.config().map_err(|e| {
                    StoreError::Connect(format!("postgres.script_url: {}", describe(&e)))
                })?;
                // A script URL that says nothing of TLS is encrypted and checked as herald's own.
                let tls = if script_url.names_tls() {
                    script_url.tls()
                } else {
                    script_config.ssl_mode(login.config.get_ssl_mode());
                    url.tls()
                };
                Login::new(script_config, &tls)?
            }
            None => login.with_config(migrations::script_role(
                &mut first,
                &login.config,
                &settings.schema,
                &secrets,
            )?),
        };
        drop(first);
        let manager = Manager {
            login,
            schema: settings.schema.clone(),
        };
        let pool = r2d2::Pool::builder()
            .max_size(settings.pool_size)
            .min_idle(Some(1))
            .connection_timeout(CONNECT_TIMEOUT)
            // After a server restart or a cut every pooled connection is dead, and a client learns
            // it only by using it: an empty query at checkout replaces it before a request or a
            // commit fails on it, unless the server answered on it moments ago (`TRUSTED_FOR`).
            .test_on_check_out(true)
            .build_unchecked(manager.clone());
        let store = Postgres {
            inner: Arc::new(Inner {
                url,
                schema: settings.schema,
                manager,
                pool,
                secrets,
                node: format!("node_{}", uuid::Uuid::now_v7().simple()),
                presence: Mutex::default(),
                script_login,
                script_time_budget,
                takeover: nodes::Takeover::within(settings.takeover),
                write_problems: Mutex::default(),
            }),
        };
        store.grant_reads_to_scripts()?;
        Ok(store)
    }

    fn secrets(&self) -> &Secrets {
        &self.inner.secrets
    }

    fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// Who this process is when it holds a lease.
    fn node(&self) -> &str {
        &self.inner.node
    }

    fn takeover(&self) -> nodes::Takeover {
        self.inner.takeover
    }

    fn presence(&self) -> &Mutex<Option<PgConn>> {
        &self.inner.presence
    }

    /// A connection of the pool, with herald's schema on its `search_path`.
    fn client(&self) -> Result<Pooled> {
        self.inner
            .pool
            .get()
            .map_err(|e| StoreError::Connect(format!("{}: {e}", self.inner.url)))
    }

    /// Runs `work` in one transaction and commits it, or rolls it back if `work` fails.
    fn write<T>(&self, work: impl FnOnce(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        let value = work(&mut tx)?;
        tx.commit()?;
        Ok(value)
    }

    /// `write` for the writes herald's loops keep making: how it went is noted under `what`, for
    /// `/readyz`.
    fn write_noting<T>(
        &self,
        what: &'static str,
        work: impl FnOnce(&mut Tx<'_>) -> Result<T>,
    ) -> Result<T> {
        let result = self.write(work);
        self.noting(what, result)
    }

    fn noting<T>(&self, operation: &'static str, result: Result<T>) -> Result<T> {
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

    /// A connection of its own, outside the pool (the change feed's, which listens).
    fn dedicated_client(&self) -> Result<PgConn> {
        self.inner.manager.open().map_err(|e| {
            StoreError::Connect(format!(
                "cannot connect to {}: {}",
                self.inner.url,
                describe(&e)
            ))
        })
    }

    /// Lets the scripts' role read every table of the application's schemas (those on the
    /// `search_path` but herald's). Run at start and whenever tracking is synced, so that tables
    /// the application creates later are readable too. Without the right to grant (a DBA manages
    /// the role), it says so once in the log and leaves the grants to the DBA.
    fn grant_reads_to_scripts(&self) -> Result<()> {
        let role = self
            .inner
            .script_login
            .config
            .get_user()
            .unwrap_or_default()
            .to_owned();
        if role.is_empty() {
            return Ok(());
        }
        let mut client = self.client()?;
        let schemas: Vec<String> = client
            .query(
                "SELECT s FROM unnest(current_schemas(false)) AS s WHERE s <> $1",
                &[&self.inner.schema],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for schema in schemas {
            let sql = format!(
                "GRANT USAGE ON SCHEMA {schema} TO {role}; \
                 GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}",
                schema = quote_ident(&schema),
                role = quote_ident(&role),
            );
            if let Err(e) = client.batch_execute(&sql) {
                tracing::debug!(
                    schema = %schema,
                    "cannot grant the scripts' role reads on the application's tables: {}",
                    describe(&e)
                );
            }
        }
        Ok(())
    }
}

impl Operations for Postgres {
    /// Whether the server answers; a server that is down is known within `PING_WAIT`, not the
    /// pool's whole connection time-out.
    fn ping(&self) -> Result<()> {
        let mut client = self
            .inner
            .pool
            .get_timeout(PING_WAIT)
            .map_err(|e| StoreError::Connect(format!("{}: {e}", self.inner.url)))?;
        client.simple_query("SELECT 1")?;
        Ok(())
    }

    /// Whether herald can write: the server answers and is not a read-only standby.
    fn can_write(&self, _wait: Duration) -> Result<bool> {
        let in_recovery: bool = self
            .client()?
            .query_one("SELECT pg_is_in_recovery()", &[])?
            .get(0);
        Ok(!in_recovery)
    }

    fn write_problems(&self) -> Vec<String> {
        self.inner
            .write_problems
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .map(|(operation, error)| format!("{operation}: {error}"))
            .collect()
    }

    /// PostgreSQL keeps its own house (autovacuum, checkpoints): nothing to do.
    fn maintain(&self) -> Result<()> {
        Ok(())
    }

    /// Runs the application's schema script (`schema.postgres.sql`) in one transaction: it must be
    /// idempotent. The scripts' role may read the tables it creates.
    fn apply_schema(&self, file_name: &str, sql: &str) -> Result<()> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        let applied = tx.batch_execute(sql).and_then(|()| tx.commit());
        applied.map_err(|e| StoreError::Schema {
            file: file_name.to_owned(),
            message: describe(&e),
        })?;
        drop(client);
        self.grant_reads_to_scripts()
    }

    fn listen_for_deliveries(
        &self,
        wake: Box<dyn Fn() + Send>,
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> Result<Option<std::thread::JoinHandle<()>>> {
        let listener = signals::listen(self.clone(), wake, stop)
            .map_err(|e| StoreError::Connect(format!("no thread to listen for deliveries: {e}")))?;
        Ok(Some(listener))
    }

    fn script_db(&self) -> Result<Box<dyn ScriptDb>> {
        Ok(Box::new(script_db::ScriptConnection::new(
            self.inner.script_login.clone(),
            self.inner.script_time_budget,
        )))
    }
}

/// PostgreSQL's own words for an error: the server's message (with its detail and hint) for an
/// error the server raised, the client's otherwise.
pub fn describe(error: &postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        let mut text = db.message().to_owned();
        if let Some(detail) = db.detail() {
            text.push_str(": ");
            text.push_str(detail);
        }
        if let Some(hint) = db.hint() {
            text.push_str(" (");
            text.push_str(hint);
            text.push(')');
        }
        return text;
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        source = inner.source();
    }
    text
}

/// Whether a PostgreSQL error is worth the same call again soon: the transaction lost a race
/// (serialization failure, deadlock) or a lock wait, or the connection went away.
pub(crate) fn is_transient(error: &postgres::Error) -> bool {
    use postgres::error::SqlState;
    match error.code() {
        Some(code) => [
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::LOCK_NOT_AVAILABLE,
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
        ]
        .contains(code),
        None => error.is_closed(),
    }
}

/// Quotes an identifier for PostgreSQL (`Deal` -> `"Deal"`).
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string literal for PostgreSQL (`it's` -> `'it''s'`).
pub(crate) fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Text as PostgreSQL can store it: `text` holds no NUL character, which a target's response body
/// or a description may carry; each becomes U+FFFD, as invalid UTF-8 already does.
pub(crate) fn storable(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// `storable` for an optional text.
pub(crate) fn storable_opt(text: &Option<String>) -> Option<Cow<'_, str>> {
    text.as_deref().map(storable)
}

/// The database's clock, in Unix milliseconds: leases and due times across several herald
/// processes follow one clock.
pub(crate) const DB_NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

/// What `herald check` checks notification scripts against: the application's tables as they are
/// and as `schema_sql` would leave them (applied in a transaction that is rolled back).
pub fn known_tables(
    url: &PostgresUrl,
    schema_sql: Option<&str>,
) -> Result<std::collections::BTreeSet<String>> {
    let mut config = url
        .config()
        .map_err(|e| StoreError::Connect(format!("{url}: {}", describe(&e))))?;
    config.connect_timeout(CONNECT_TIMEOUT);
    let mut client = Login::new(config, &url.tls())?
        .connect()
        .map_err(|e| StoreError::Connect(format!("cannot connect to {url}: {}", describe(&e))))?;
    let mut tx = client.transaction()?;
    if let Some(sql) = schema_sql {
        tx.batch_execute(sql).map_err(|e| StoreError::Schema {
            file: "schema.postgres.sql".into(),
            message: describe(&e),
        })?;
    }
    let tables = tx
        .query(
            "SELECT c.relname FROM pg_class c
             WHERE c.relkind IN ('r', 'p') AND c.relnamespace = ANY(
                 SELECT oid FROM pg_namespace WHERE nspname = ANY(current_schemas(false)))",
            &[],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    tx.rollback()?;
    Ok(tables)
}
