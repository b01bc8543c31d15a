//! Storage: the only module that speaks SQL.
//!
//! `backend.rs` is the seam: what herald needs of its database, as traits. `Store` is herald's
//! handle on whichever backend implements them. The types both backends share are in `change.rs`,
//! `query.rs` and at the top of `hooks.rs`, `history.rs` and `outbox/mod.rs`.
//!
//! The SQLite backend is `sqlite.rs` (the handle, its connections and write helpers) and the files
//! beside it, one concept each: `hooks.rs`, `history.rs`, `outbox/`, `changes.rs`,
//! `script_failures.rs`, `read_only.rs`, `migrations.rs`. One file holds the application's tables
//! and herald's own (prefixed `herald_`); herald keeps its write transactions short because the
//! application writes to the same file: every write is one `BEGIN IMMEDIATE` transaction that does a
//! bounded amount of work and commits.
//!
//! The PostgreSQL backend is `postgres/`: herald's tables in a schema of their own, a pool of
//! connections, capture by `SECURITY DEFINER` triggers and `NOTIFY`, claims with `SKIP LOCKED`.
//!
//! `secrets.rs` seals hooks' secrets for both.
//!
//! Times are Unix milliseconds (UTC). Public ids are prefixed strings (see [`crate::ids`]); internal
//! ordering uses integer sequence numbers.

mod backend;
mod backfills;
mod change;
mod changes;
mod cluster;
mod filtering;
mod history;
mod hooks;
mod migrations;
mod nodes;
mod outbox;
pub mod postgres;
mod query;
mod read_only;
mod script_failures;
mod secrets;
mod sign_ins;
mod sqlite;

use std::path::Path;
use std::sync::Arc;

use crate::config::PostgresSettings;
use crate::database::Database;

pub use backend::{
    Backend, Backfills, ChangeFeed, ChangeLog, ConsumerRole, History, Hooks, Nodes, Operations,
    Outbox, ScriptDb, SignIns,
};
pub use backfills::{Backfill, BackfillStatus, BackfillStep};
pub use change::{
    Action, Change, ChangeBatch, Consumed, TrackingProblem, TrackingSql, UnreadableChange,
};
pub use cluster::{NodeBeat, NodeStatus};
pub use filtering::{FilterRule, HeldEvent, HooksForBatch, Judgement};
pub use history::{AttemptDetail, AttemptEntry, EventAction, EventFilter, HookEvent, Page};
pub use hooks::{Hook, HookFilter, HookOrigin, HookPatch, HookState, NewHook, Scope};
pub use outbox::{
    AttemptOutcome, AttemptRecord, Claim, ClaimOutcome, ClaimedDelivery, DeliveryStatus,
    FailurePolicy, HookHealthChange, NewEvent, NextStep, OutboxSnapshot, Stored, StoredAttempt,
};
pub use query::{Cell, QueryError, RowLimit, Rows, ScopeName};
use read_only::ReadOnlyDb;
pub use script_failures::ScriptFailure;
pub use secrets::{SecretError, Secrets};
pub use sign_ins::{SignInAllowance, StoredSession};
pub use sqlite::Sqlite;
use sqlite::{open_connection, quote_ident, quote_literal};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database error: {}", postgres::describe(.0))]
    Postgres(#[from] ::postgres::Error),
    /// The database cannot be reached or logged into, or herald lacks a privilege it needs: one
    /// line that names what is wrong, never a password.
    #[error("{0}")]
    Connect(String),
    #[error("stored JSON is malformed: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cannot apply {file}: {message}")]
    Schema { file: String, message: String },
    #[error(
        "the database was brought to version {found} of herald's tables by a newer herald; this one \
         knows versions up to {known} and would misread them: run the newer herald"
    )]
    NewerDatabase { found: i64, known: i64 },
    #[error("another herald process consumed the change log at the same time")]
    ConcurrentConsumer,
    #[error("{0}")]
    Secret(#[from] SecretError),
}

impl StoreError {
    /// The database was locked by someone else for longer than the busy time-out: worth retrying.
    pub fn is_busy(&self) -> bool {
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ),
            StoreError::Postgres(e) => postgres::is_transient(e),
            _ => false,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// herald's handle on its database, whichever backend it is: cheap to clone, and every method
/// (the traits of `backend`, reached through `Deref`) blocks, so async callers use
/// `spawn_blocking`.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
}

impl Store {
    /// Opens the database herald is configured for: an SQLite file (created if needed) or a
    /// PostgreSQL database; either way herald's tables are brought to the latest version.
    pub fn open_database(
        db: &Database,
        settings: &PostgresSettings,
        secrets: Secrets,
        script_time_budget: std::time::Duration,
    ) -> Result<Store> {
        match db {
            Database::Sqlite(path) => Store::open_with_secrets(path, secrets),
            Database::Postgres(url) => Ok(Store::from(postgres::Postgres::open(
                postgres::PostgresOptions {
                    url: url.clone(),
                    settings: settings.clone(),
                    secrets,
                    script_time_budget,
                },
            )?)),
        }
    }

    /// Opens (creating if needed) an SQLite database file and brings herald's tables to the latest
    /// version.
    pub fn open(path: &Path) -> Result<Store> {
        Ok(Store::from(Sqlite::open(path)?))
    }

    /// Opens an SQLite database file with the key that seals hooks' secrets at rest.
    pub fn open_with_secrets(path: &Path, secrets: Secrets) -> Result<Store> {
        Ok(Store::from(Sqlite::open_with_secrets(path, secrets)?))
    }
}

/// The tables that exist in the database, or that the application's schema script creates: what
/// `herald check` checks notification scripts against. Nothing is created or changed.
pub fn known_tables(
    db: &Database,
    schema_sql: Option<&str>,
) -> Result<std::collections::BTreeSet<String>> {
    match db {
        Database::Sqlite(path) => sqlite::known_tables(path, schema_sql),
        Database::Postgres(url) => postgres::known_tables(url, schema_sql),
    }
}

impl<B: Backend + 'static> From<B> for Store {
    fn from(backend: B) -> Store {
        Store {
            backend: Arc::new(backend),
        }
    }
}

impl std::ops::Deref for Store {
    type Target = dyn Backend;

    fn deref(&self) -> &(dyn Backend + 'static) {
        &*self.backend
    }
}
