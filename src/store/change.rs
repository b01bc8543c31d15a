//! What the change log holds, whichever database keeps it: one change of one row, what a read of
//! the log found, and what a batch takes off the log once its events are stored.

/// What happened to a row, with the codes of the CRM that herald mirrors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Insert,
    Update,
    Delete,
}

impl Action {
    pub(crate) const ALL: [Action; 3] = [Action::Insert, Action::Update, Action::Delete];

    /// `"1"`, `"2"` or `"3"`: the `action` scripts see.
    pub fn code(self) -> &'static str {
        match self {
            Action::Insert => "1",
            Action::Update => "2",
            Action::Delete => "3",
        }
    }

    /// `"insert"`, `"update"` or `"delete"`: the `action_key` scripts see.
    pub fn key(self) -> &'static str {
        match self {
            Action::Insert => "insert",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }

    pub(crate) fn from_number(n: i64) -> Option<Action> {
        match n {
            1 => Some(Action::Insert),
            2 => Some(Action::Update),
            3 => Some(Action::Delete),
            _ => None,
        }
    }

    pub(crate) fn number(self) -> i64 {
        match self {
            Action::Insert => 1,
            Action::Update => 2,
            Action::Delete => 3,
        }
    }
}

/// One logged change of one row.
#[derive(Debug, Clone)]
pub struct Change {
    pub id: i64,
    pub table: String,
    pub row_id: i64,
    pub action: Action,
    /// The row after the change; for a delete, before it.
    pub row: serde_json::Value,
    /// The row before an update or a delete; `None` for an insert.
    pub old_row: Option<serde_json::Value>,
    pub changed_at: i64,
}

/// A logged row that cannot be turned into a change: its layout is missing or does not fit its
/// values, its text is not JSON, or its action is unknown (written by hand, or by a newer herald).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadableChange {
    pub id: i64,
    pub table: String,
    pub row_id: i64,
    pub reason: String,
}

/// Something read from the change log, or why it cannot be read.
pub(crate) type Readable<T> = std::result::Result<T, String>;

/// What one read of the change log found.
#[derive(Debug, Default)]
pub struct ChangeBatch {
    pub changes: Vec<Change>,
    /// Passed over, not retried: one bad row must not stop every change behind it.
    pub unreadable: Vec<UnreadableChange>,
    /// The id of the last row read, readable or not; `None` when nothing was read.
    pub through: Option<i64>,
    /// What committing the batch takes off the log: hand it to `commit_consumed_changes`.
    pub consumed: Consumed,
}

/// What a batch consumes. SQLite gives out change ids in commit order, so a position says it all:
/// the batch moves it from where it was read to its last id. PostgreSQL's ids are not in commit
/// order (a transaction may commit after one that took a higher id), so there the batch names
/// every id it read, and only those leave the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Consumed {
    pub(crate) from_position: i64,
    pub(crate) to_position: i64,
    pub(crate) ids: Vec<i64>,
}

impl Consumed {
    /// A move of SQLite's position.
    pub(crate) fn positions(from: i64, to: i64) -> Consumed {
        Consumed {
            from_position: from,
            to_position: to,
            ids: Vec::new(),
        }
    }

    /// The rows of PostgreSQL's log a batch read.
    pub(crate) fn rows(ids: Vec<i64>) -> Consumed {
        Consumed {
            from_position: 0,
            to_position: 0,
            ids,
        }
    }
}

impl ChangeBatch {
    /// Rows read, readable or not.
    pub fn len(&self) -> usize {
        self.changes.len() + self.unreadable.len()
    }

    pub fn is_empty(&self) -> bool {
        self.through.is_none()
    }
}

/// A table herald was asked to track but cannot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackingProblem {
    pub table: String,
    pub message: String,
}

impl TrackingProblem {
    /// A table the last sync tracked, found without herald's triggers: rebuilt, or its triggers
    /// dropped, behind herald's back (both backends say it alike).
    pub(crate) fn lost_triggers(table: &str) -> TrackingProblem {
        tracing::error!(table = %table, "a tracked table lost its tracking triggers");
        TrackingProblem {
            table: table.to_owned(),
            message: format!(
                "table {table} was found without herald's tracking triggers (rebuilt, or its \
                 triggers dropped, behind herald's back): changes written to it since then and \
                 until now were not logged. Run the application's migrations through `herald \
                 migrate FILE.sql`, or with the SQL `herald migrate --print-triggers FILE.sql` \
                 prints"
            ),
        }
    }

    /// Where the administrator looks for what went wrong: a failure of the change log itself in
    /// the script failures (pages, API, metrics).
    pub(crate) fn as_failure(&self) -> super::ScriptFailure {
        super::ScriptFailure {
            script: "herald_changes".into(),
            line: None,
            col: None,
            message: self.message.clone(),
            trigger: None,
            table: Some(self.table.clone()),
            row_id: None,
            change_id: None,
        }
    }
}

/// What a migration tool that runs its own SQL runs around it, in the same transaction, so that
/// herald's triggers neither block it nor miss a change: `before` (drops herald's triggers), the
/// migration, then `after` (makes them again for the tables as the migration leaves them).
#[derive(Debug, Clone, Default)]
pub struct TrackingSql {
    pub before: Vec<String>,
    pub after: Vec<String>,
    /// Tables to track that the migration leaves untrackable.
    pub problems: Vec<TrackingProblem>,
}
