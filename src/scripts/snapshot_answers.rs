//! The answers of the scripts' queries within one read snapshot.
//!
//! A tracker batch renders every change's scripts in one snapshot of the application's database,
//! so the same query with the same parameters answers the same rows all through it: the company
//! of a hundred deals of one company is read once, not a hundred times. On PostgreSQL each query
//! is a round trip to the server, and those round trips are most of what rendering costs. The
//! answers are forgotten when the snapshot ends; a query that reads the clock or a random number
//! (or anything else that differs between two calls in one transaction) is always asked again.

use std::collections::HashMap;

use crate::store::{Cell, RowLimit, Rows};

/// The most rows remembered for one snapshot: a batch that reads more asks again past it.
const MAX_ROWS: usize = 20_000;

/// Functions whose answer differs between two calls in one snapshot.
const VOLATILE: [&str; 6] = [
    "random",
    "clock_timestamp",
    "timeofday",
    "statement_timestamp",
    "txid_current",
    "gen_random_uuid",
];

#[derive(Default)]
pub(super) struct SnapshotAnswers {
    answers: HashMap<String, Rows>,
    rows: usize,
}

impl SnapshotAnswers {
    /// What a query is remembered by; `None` for one that must always be asked.
    pub(super) fn key(sql: &str, params: &[Cell], limit: RowLimit) -> Option<String> {
        let lower = sql.to_ascii_lowercase();
        if VOLATILE.iter().any(|function| lower.contains(function)) {
            return None;
        }
        // Debug keeps each parameter's type: 1 and '1' are different questions.
        Some(format!("{limit:?}\u{0}{sql}\u{0}{params:?}"))
    }

    pub(super) fn get(&self, key: &str) -> Option<Rows> {
        self.answers.get(key).cloned()
    }

    pub(super) fn remember(&mut self, key: String, rows: &Rows) {
        let counted = rows.values.len().max(1);
        if self.rows + counted > MAX_ROWS {
            return;
        }
        self.rows += counted;
        self.answers.insert(key, rows.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize) -> Rows {
        Rows {
            columns: vec!["id".into()],
            values: (0..n).map(|i| vec![Cell::Integer(i as i64)]).collect(),
        }
    }

    #[test]
    fn the_same_question_gets_the_same_answer_and_a_different_one_does_not() {
        let mut answers = SnapshotAnswers::default();
        let sql = "SELECT id FROM \"Company\" WHERE id = ?";
        let key = SnapshotAnswers::key(sql, &[Cell::Integer(1)], RowLimit::First).unwrap();
        answers.remember(key.clone(), &rows(1));
        assert_eq!(answers.get(&key), Some(rows(1)));
        for other in [
            SnapshotAnswers::key(sql, &[Cell::Integer(2)], RowLimit::First),
            SnapshotAnswers::key(sql, &[Cell::Text("1".into())], RowLimit::First),
            SnapshotAnswers::key(sql, &[Cell::Integer(1)], RowLimit::AtMost(10)),
        ] {
            assert_eq!(answers.get(&other.unwrap()), None);
        }
    }

    #[test]
    fn the_clock_and_chance_are_always_asked_and_memory_is_bounded() {
        for sql in [
            "SELECT random()",
            "SELECT CLOCK_TIMESTAMP()",
            "SELECT gen_random_uuid()",
        ] {
            assert_eq!(SnapshotAnswers::key(sql, &[], RowLimit::First), None);
        }
        let mut answers = SnapshotAnswers::default();
        answers.remember("big".into(), &rows(MAX_ROWS));
        answers.remember("one more".into(), &rows(1));
        assert!(answers.get("big").is_some());
        assert_eq!(answers.get("one more"), None, "past the bound, asked again");
    }
}
