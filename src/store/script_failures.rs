//! Script failures: a notification or body script that threw, broke a limit or returned the wrong
//! thing, recorded with its file, line and column (and a change-log row that could not be read).

use rusqlite::Transaction;

use super::Result;
use crate::clock::now_ms;

/// A script that failed while handling a change or rendering an event.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptFailure {
    pub script: String,
    pub line: Option<u32>,
    pub col: Option<u32>,
    pub message: String,
    pub trigger: Option<String>,
    pub table: Option<String>,
    pub row_id: Option<i64>,
    pub change_id: Option<i64>,
}

pub(super) fn insert_failures(tx: &Transaction<'_>, failures: &[ScriptFailure]) -> Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO herald_script_failures
         (script, line, col, message, trigger_name, table_name, row_id, change_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    let now = now_ms();
    for f in failures {
        stmt.execute((
            &f.script,
            f.line,
            f.col,
            &f.message,
            &f.trigger,
            &f.table,
            f.row_id,
            f.change_id,
            now,
        ))?;
    }
    Ok(())
}
