//! The answers of the scripts' queries within one read snapshot.
//!
//! A tracker batch renders every change's scripts in one snapshot of the application's database,
//! so the same query with the same parameters answers the same rows all through it: the company
//! of a hundred deals of one company is read once, not a hundred times. On PostgreSQL each query
//! is a round trip to the server, and those round trips are most of what rendering costs. The
//! answers are forgotten when the snapshot ends; a query that reads the clock or a random number
//! (or anything else that differs between two calls in one transaction) is always asked again.
//!
//! Scripts also ask the same query once for each change, with the change's row id: the deal of
//! each of 500 deal changes. A renderer says which rows its changes are about (`expect_rows`);
//! a query asked with the current row's id is then asked, in one go, for the next rows of the same
//! table too (`ScriptDb::query_ahead`), and their scripts find the answers here. A query that
//! sets something for the rest of the transaction (`set_config`) or takes a lock is only ever
//! asked for the row that asks it.

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

/// The most rows one query is asked ahead for.
const MAX_AHEAD: usize = 128;

/// Functions whose effect outlasts the query: asked for rows ahead, they would act for the wrong
/// row (a setting left at the last row's value) or take locks no script asked for.
const NOT_AHEAD: [&str; 2] = ["set_config", "advisory"];

#[derive(Default)]
pub(super) struct SnapshotAnswers {
    answers: HashMap<String, Rows>,
    rows: usize,
    /// The table and row id of each change the scripts run for, in order.
    rows_ahead: Vec<(String, i64)>,
    /// Which of them the scripts run for now.
    current: usize,
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

    /// The changes the next runs are for, in order; the first is the current one.
    pub(super) fn expect_rows(&mut self, rows: Vec<(String, i64)>) {
        self.rows_ahead = rows;
        self.current = 0;
    }

    /// The scripts of the current change are done: the next one is current.
    pub(super) fn next_row(&mut self) {
        self.current += 1;
    }

    /// For a query about to be asked with the current change's row id as its one parameter: that
    /// id, then the ids of the next changes of the same table it has no answer for yet (at most
    /// `MAX_AHEAD` in all). `None` for any other query, or when no row is ahead.
    pub(super) fn ids_ahead(
        &self,
        sql: &str,
        params: &[Cell],
        limit: RowLimit,
    ) -> Option<Vec<i64>> {
        let (table, id) = self.rows_ahead.get(self.current)?;
        if params != [Cell::Integer(*id)] || self.rows + MAX_AHEAD > MAX_ROWS {
            return None;
        }
        let lower = sql.to_ascii_lowercase();
        if NOT_AHEAD.iter().any(|function| lower.contains(function)) {
            return None;
        }
        let mut ids = vec![*id];
        for (_, next) in self.rows_ahead[self.current + 1..]
            .iter()
            .filter(|(t, _)| t == table)
        {
            if ids.len() == MAX_AHEAD {
                break;
            }
            let answered = Self::key(sql, &[Cell::Integer(*next)], limit)
                .is_some_and(|key| self.answers.contains_key(&key));
            if !answered && !ids.contains(next) {
                ids.push(*next);
            }
        }
        (ids.len() > 1).then_some(ids)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    use super::*;
    use crate::scripts::sandbox::Sandbox;
    use crate::scripts::SandboxLimits;
    use crate::store::{ScriptDb, Store};

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

    #[test]
    fn a_query_asked_with_the_current_row_id_is_asked_ahead_for_the_tables_next_rows() {
        let sql = "SELECT * FROM \"Deal\" WHERE id = ?";
        let mut answers = SnapshotAnswers::default();
        let deal = |id| ("Deal".to_owned(), id);
        answers.expect_rows(vec![
            deal(1),
            ("Contact".to_owned(), 2),
            deal(3),
            deal(1),
            deal(4),
        ]);
        let first = RowLimit::First;
        assert_eq!(
            answers.ids_ahead(sql, &[Cell::Integer(1)], first),
            Some(vec![1, 3, 4])
        );
        // Another id than the current row's, or more than one parameter: asked alone.
        assert_eq!(answers.ids_ahead(sql, &[Cell::Integer(3)], first), None);
        let setting = "SELECT set_config('app.deal', ?::text, true)";
        assert_eq!(answers.ids_ahead(setting, &[Cell::Integer(1)], first), None);
        assert_eq!(
            answers.ids_ahead(sql, &[Cell::Integer(1), Cell::Integer(2)], first),
            None
        );
        // What is answered already is not asked again.
        let key = SnapshotAnswers::key(sql, &[Cell::Integer(3)], first).unwrap();
        answers.remember(key, &rows(1));
        assert_eq!(
            answers.ids_ahead(sql, &[Cell::Integer(1)], first),
            Some(vec![1, 4])
        );
        for _ in 0..4 {
            answers.next_row();
        }
        // The last row has none ahead; past the rows, nothing is current.
        assert_eq!(answers.ids_ahead(sql, &[Cell::Integer(4)], first), None);
        answers.next_row();
        assert_eq!(answers.ids_ahead(sql, &[Cell::Integer(4)], first), None);
        // Memory nearly full: asked alone.
        answers.expect_rows(vec![deal(1), deal(5)]);
        assert!(answers.ids_ahead(sql, &[Cell::Integer(1)], first).is_some());
        answers.remember("big".into(), &rows(MAX_ROWS - MAX_AHEAD));
        assert_eq!(answers.ids_ahead(sql, &[Cell::Integer(1)], first), None);
    }

    // The sandbox asking: what reaches the database, within one snapshot.

    /// A script database that counts the queries that reach it.
    struct Counting {
        inner: Box<dyn ScriptDb>,
        queries: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl ScriptDb for Counting {
        fn begin_snapshot(&self) -> crate::store::Result<()> {
            self.inner.begin_snapshot()
        }
        fn end_snapshot(&self) -> crate::store::Result<()> {
            self.inner.end_snapshot()
        }
        fn set_interrupt_check(&self, interrupted: Box<dyn FnMut() -> bool + Send>) {
            self.inner.set_interrupt_check(interrupted)
        }
        fn query(
            &self,
            sql: &str,
            params: &[Cell],
            limit: RowLimit,
        ) -> Result<Rows, crate::store::QueryError> {
            self.queries.fetch_add(1, Ordering::SeqCst);
            self.inner.query(sql, params, limit)
        }
        fn asks_ahead(&self) -> bool {
            true
        }
        /// Asked ahead as a server would, in one call, counted apart (in the thousands).
        fn query_ahead(
            &self,
            sql: &str,
            ids: &[i64],
            limit: RowLimit,
            _time: std::time::Duration,
        ) -> Option<Vec<Option<Rows>>> {
            self.queries.fetch_add(1000, Ordering::SeqCst);
            ids.iter()
                .map(|id| Some(self.inner.query(sql, &[Cell::Integer(*id)], limit).ok()))
                .collect()
        }
    }

    /// A sandbox on a fresh SQLite file whose queries are counted, and the body script of
    /// `trigger` made of `source`.
    fn counting_sandbox(
        trigger: &str,
        source: &str,
    ) -> (
        tempfile::TempDir,
        Sandbox,
        rhai::Shared<crate::scripts::Script>,
        Arc<std::sync::atomic::AtomicUsize>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        let scripts = dir.path().join("scripts");
        std::fs::create_dir(&scripts).unwrap();
        std::fs::write(
            scripts.join(format!("GetWebhookResponseBody_{trigger}.rhai")),
            source,
        )
        .unwrap();
        let limits = SandboxLimits::default();
        let set = crate::scripts::ScriptSet::load(&scripts, &limits).unwrap();
        let script = set.body(trigger).expect("compiles").clone();
        let queries = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let sandbox = Sandbox::new(
            &limits,
            Box::new(Counting {
                inner: store.script_db().unwrap(),
                queries: queries.clone(),
            }),
        );
        (dir, sandbox, script, queries)
    }

    #[test]
    fn a_query_asked_again_in_one_snapshot_is_answered_from_memory() {
        let (_dir, sandbox, script, queries) = counting_sandbox(
            "Twice",
            "let a = db_query_one(\"SELECT ? + 1 AS n\", [row_id]);\n\
             let b = db_query_one(\"SELECT ? + 1 AS n\", [row_id]);\n\
             let r = db_query_one(\"SELECT random() AS r\", []);\n\
             #{ a: a.n, b: b.n }",
        );
        let payloads = sandbox.in_one_snapshot(|| {
            [1, 1, 2].map(|row| sandbox.render(&script, Some(row), None).unwrap())
        });
        assert_eq!(payloads[0], r#"{"a":2,"b":2}"#);
        assert_eq!(payloads[2], r#"{"a":3,"b":3}"#);
        // `? + 1` for row 1 once, for row 2 once; random() every time.
        assert_eq!(queries.load(Ordering::SeqCst), 2 + 3);
        // Outside a snapshot every query is asked.
        queries.store(0, Ordering::SeqCst);
        sandbox.render(&script, Some(1), None).unwrap();
        assert_eq!(queries.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn the_next_changes_of_a_table_are_asked_for_at_once() {
        let (_dir, sandbox, script, queries) = counting_sandbox(
            "Next",
            "#{ n: db_query_one(\"SELECT ? + 1 AS n\", [row_id]).n }",
        );
        let rows = [("Deal", 5), ("Contact", 8), ("Deal", 6), ("Deal", 7)];
        let payloads = sandbox.in_one_snapshot(|| {
            sandbox.expect_rows(rows);
            rows.map(|(_, id)| {
                let payload = sandbox.render(&script, Some(id), None).unwrap();
                sandbox.next_row();
                payload
            })
        });
        assert_eq!(
            payloads,
            [r#"{"n":6}"#, r#"{"n":9}"#, r#"{"n":7}"#, r#"{"n":8}"#]
        );
        // The deals 5, 6 and 7 in one go; the contact (another table) alone.
        assert_eq!(queries.load(Ordering::SeqCst), 1000 + 1);
    }
}
