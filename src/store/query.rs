//! What scripts' queries take and give, whichever database answers them: the values (`Cell`), a
//! result (`Rows`), the row limit, the errors; and the application's companies and projects, read
//! through the same read-only handle, for the scope pickers and for placing a changed row.

use super::ScriptDb;

/// A value read from or bound to SQL.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
    /// PostgreSQL's `boolean` (SQLite has none: its booleans are integers).
    Bool(bool),
    /// PostgreSQL's `json`, `jsonb` and arrays, as the JSON value they hold.
    Json(serde_json::Value),
}

/// What a query returned: the column names once, then each row's values in the same order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    pub columns: Vec<String>,
    pub values: Vec<Vec<Cell>>,
}

/// How many rows a query may return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowLimit {
    /// Up to this many; one more is an error (a script that forgot its LIMIT hears of it).
    AtMost(usize),
    /// The first row only; the statement stops there (`db_query_one`).
    First,
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("only reads are allowed: this statement would change the database")]
    NotAReadOnlyStatement,
    #[error("more than {0} rows; add a LIMIT")]
    TooManyRows(usize),
    /// The database's own message.
    #[error("{0}")]
    Database(String),
    /// The database could not be reached (the server restarting, the connection cut): nothing
    /// the script did; the tracker reads the batch again rather than failing its events.
    #[error("the database cannot be reached: {0}")]
    Unavailable(String),
}

/// A company or project of the application, as the admin pages offer it as a hook's scope.
#[derive(Debug, Clone, PartialEq)]
pub struct ScopeName {
    pub id: i64,
    /// The row's `name`, when the table has one.
    pub name: Option<String>,
    /// For a project: its company.
    pub company_id: Option<i64>,
}

/// The most companies or projects the admin pages list; beyond it, an id is typed by hand.
const MAX_SCOPES: usize = 1000;

/// The rows of the application's `Company` table, by id: the company-level scopes, named by the
/// same convention that `events::row_scope` places rows by. Empty without such a table. (The
/// names are quoted so that PostgreSQL finds a table created as `"Company"`; SQLite reads them
/// the same.)
pub(crate) fn companies(db: &(impl ScriptDb + ?Sized)) -> Vec<ScopeName> {
    scope_names(
        db,
        "SELECT id, name, NULL FROM \"Company\" ORDER BY id LIMIT ?1",
    )
    .or_else(|| {
        scope_names(
            db,
            "SELECT id, NULL, NULL FROM \"Company\" ORDER BY id LIMIT ?1",
        )
    })
    .unwrap_or_default()
}

/// The rows of the application's `Project` table, by id, with their company.
pub(crate) fn projects(db: &(impl ScriptDb + ?Sized)) -> Vec<ScopeName> {
    scope_names(
        db,
        "SELECT id, name, company_id FROM \"Project\" ORDER BY id LIMIT ?1",
    )
    .or_else(|| {
        scope_names(
            db,
            "SELECT id, NULL, NULL FROM \"Project\" ORDER BY id LIMIT ?1",
        )
    })
    .unwrap_or_default()
}

/// The `company_id` of row `project_id` of the application's `Project` table: how a row that names
/// only its project is placed in a company. `None` when there is no such table, row or column.
pub(crate) fn company_of_project(db: &(impl ScriptDb + ?Sized), project_id: i64) -> Option<i64> {
    let rows = db
        .query(
            "SELECT company_id FROM \"Project\" WHERE id = ?1",
            &[Cell::Integer(project_id)],
            RowLimit::First,
        )
        .ok()?;
    match rows.values.first()?.first()? {
        Cell::Integer(id) => Some(*id),
        _ => None,
    }
}

fn scope_names(db: &(impl ScriptDb + ?Sized), sql: &str) -> Option<Vec<ScopeName>> {
    let rows = db
        .query(
            sql,
            &[Cell::Integer(MAX_SCOPES as i64)],
            RowLimit::AtMost(MAX_SCOPES),
        )
        .ok()?
        .values;
    let integer = |cell: &Cell| match cell {
        Cell::Integer(n) => Some(*n),
        _ => None,
    };
    Some(
        rows.iter()
            .filter_map(|row| {
                Some(ScopeName {
                    id: integer(row.first()?)?,
                    name: match row.get(1)? {
                        Cell::Text(t) => Some(t.clone()),
                        Cell::Null => None,
                        other => Some(format!("{other:?}")),
                    },
                    company_id: integer(row.get(2)?),
                })
            })
            .collect(),
    )
}
