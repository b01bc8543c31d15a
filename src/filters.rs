//! Hooks' filters: a rhai expression per hook over `payload` (the rendered body, a map), `event`
//! (the trigger or resource event name) and `change` (as body scripts see it), which says whether
//! the hook receives the event. They run in the scripts' sandbox, with its limits.
//!
//! A filter is applied at the fan-out: the tracker judges a batch's events by the filters of the
//! hooks that select them before it stores them (`judge_batch`), and the store honours the
//! judgements (`store::Judgement`): `false` makes no delivery for that hook (counted in its
//! `filtered_out`); an error is neither a silent drop nor a silent send: the delivery is stored
//! failed with the error, shown in the hook's events, and judged again (`rejudge_held`) when the
//! filter changes or when that event is retried.

use std::collections::HashMap;
use std::sync::Arc;

use crate::scripts::{Diagnostic, FilterInput, Sandbox, Script};
use crate::store::{Change, FilterRule, HeldEvent, Judgement, NewEvent, Store, StoreError};

/// How many compiled filters a `Filters` keeps before it starts over.
const MAX_COMPILED: usize = 1_000;

/// How many held events one `rejudge_held` reads at a time.
const REJUDGE_BATCH: usize = 500;

/// A filter that does not compile, in words with its line and column (`filter:1:18: ...`).
pub fn compile_error(diagnostic: &Diagnostic) -> String {
    format!("the filter does not compile: {diagnostic}")
}

/// Compiled filters by their text, so that a batch does not compile them again.
#[derive(Default)]
pub struct Filters {
    compiled: HashMap<String, Result<Arc<Script>, Diagnostic>>,
}

impl Filters {
    fn compiled(&mut self, sandbox: &Sandbox, source: &str) -> Result<Arc<Script>, Diagnostic> {
        if self.compiled.len() >= MAX_COMPILED && !self.compiled.contains_key(source) {
            self.compiled.clear();
        }
        self.compiled
            .entry(source.to_owned())
            .or_insert_with(|| sandbox.compile_filter(source).map(Arc::new))
            .clone()
    }

    /// What the filter `source` makes of one event.
    pub fn judge(&mut self, sandbox: &Sandbox, source: &str, input: &FilterInput) -> Judgement {
        let filter = match self.compiled(sandbox, source) {
            Ok(filter) => filter,
            // Saved filters compiled when they were saved; one that no longer does (a newer rhai)
            // holds its events like any other failure.
            Err(diagnostic) => return Judgement::Failed(compile_error(&diagnostic)),
        };
        match sandbox.judge(&filter, input) {
            Ok(true) => Judgement::Passed,
            Ok(false) => Judgement::Rejected,
            Err(diagnostic) => Judgement::Failed(diagnostic.render()),
        }
    }

    /// Judges each event by the filters of the hooks that select it, and notes on the event what
    /// did not let it through. `changes` are the batch's, for `change`.
    pub fn judge_batch(
        &mut self,
        sandbox: &Sandbox,
        rules: &[FilterRule],
        events: &mut [NewEvent],
        changes: &[Change],
    ) {
        if rules.is_empty() {
            return;
        }
        let by_id: HashMap<i64, &Change> = changes.iter().map(|c| (c.id, c)).collect();
        for event in events {
            let mut input = None;
            for rule in rules.iter().filter(|r| r.events.contains(&event.trigger)) {
                let input = input.get_or_insert_with(|| {
                    let change = event.change_id.and_then(|id| by_id.get(&id).copied());
                    FilterInput::fresh(&event.trigger, &event.payload, change)
                });
                match self.judge(sandbox, &rule.filter, input) {
                    Judgement::Passed => {}
                    judgement => event.judgements.push((rule.hook_id.clone(), judgement)),
                }
            }
        }
    }
}

/// What judging a hook's held events again came to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rejudged {
    /// Made due: the filter lets them through now.
    pub delivered: usize,
    /// Discarded: the filter rejects them now.
    pub rejected: usize,
    /// Still held: the filter still fails on them.
    pub still_failing: usize,
}

/// Judges the events held for hook `hook_id` again by `filter` (its current one; `None`: the hook
/// has none now, and they are all delivered), settling each (`event_id`: that event only). Blocks.
pub fn rejudge_held(
    store: &Store,
    sandbox: &Sandbox,
    hook_id: &str,
    filter: Option<&str>,
    event_id: Option<&str>,
) -> Result<Rejudged, StoreError> {
    let mut filters = Filters::default();
    let mut outcome = Rejudged::default();
    let mut after = None;
    loop {
        let held: Vec<HeldEvent> =
            store.filter_held_events(hook_id, event_id, after, REJUDGE_BATCH)?;
        let Some(last) = held.last() else {
            return Ok(outcome);
        };
        after = Some(last.seq);
        let judged: Vec<(String, Judgement)> = held
            .iter()
            .map(|h| {
                let judgement = match filter {
                    Some(source) => filters.judge(sandbox, source, &FilterInput::stored(h)),
                    None => Judgement::Passed,
                };
                (h.event_id.clone(), judgement)
            })
            .collect();
        for (_, judgement) in &judged {
            match judgement {
                Judgement::Passed => outcome.delivered += 1,
                Judgement::Rejected => outcome.rejected += 1,
                Judgement::Failed(_) => outcome.still_failing += 1,
            }
        }
        store.settle_held_events(hook_id, &judged)?;
        if held.len() < REJUDGE_BATCH {
            return Ok(outcome);
        }
    }
}
