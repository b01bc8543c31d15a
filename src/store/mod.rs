//! Storage: the only module that speaks SQL.
//!
//! `backend.rs` is the seam: what herald needs of its database, as traits. `Store` is herald's
//! handle on whichever backend implements them. The SQLite backend is `sqlite.rs` (the handle,
//! its connections and write helpers) and the files beside it, one concept each: `hooks.rs`,
//! `history.rs`, `outbox/`, `changes.rs`, `script_failures.rs`, `read_only.rs`, `secrets.rs`,
//! `migrations.rs`.
//!
//! With SQLite one file holds the application's tables and herald's own (prefixed `herald_`).
//! herald keeps its write transactions short because the application writes to the same file:
//! every write is one `BEGIN IMMEDIATE` transaction that does a bounded amount of work and commits.
//!
//! Times are Unix milliseconds (UTC). Public ids are prefixed strings (see [`crate::ids`]); internal
//! ordering uses integer sequence numbers.

mod backend;
mod changes;
mod history;
mod hooks;
mod migrations;
mod outbox;
mod read_only;
mod script_failures;
mod secrets;
mod sqlite;

use std::path::Path;
use std::sync::Arc;

pub use backend::{Backend, ChangeFeed, ChangeLog, History, Hooks, Operations, Outbox, ScriptDb};
pub use changes::{Action, Change, ChangeBatch, TrackingProblem, UnreadableChange};
pub use history::{AttemptDetail, AttemptEntry, EventAction, EventFilter, HookEvent, Page};
pub use hooks::{Hook, HookFilter, HookOrigin, HookPatch, NewHook, Scope};
pub use outbox::{
    AttemptOutcome, AttemptRecord, Claim, ClaimOutcome, ClaimedDelivery, DeliveryStatus,
    FailurePolicy, HookHealthChange, NewEvent, NextStep, OutboxSnapshot, Stored, StoredAttempt,
};
use read_only::ReadOnlyDb;
pub use read_only::{Cell, QueryError, RowLimit, Rows, ScopeName};
pub use script_failures::ScriptFailure;
pub use secrets::{SecretError, Secrets};
pub use sqlite::{known_tables, Sqlite};
use sqlite::{open_connection, quote_ident, quote_literal};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
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
        matches!(
            self,
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
                if matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        )
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
