//! The outbox against a real SQLite file: fan-out, claims, records and the worker's room.

use std::collections::HashMap;

use super::*;
use crate::clock::now_ms;
use crate::delivery::{Capacity, DirectLease};
use crate::store::{Consumed, HookOrigin, Hooks, NewHook, Scope, Store, StoreError};

fn setup() -> (tempfile::TempDir, Store, String) {
    let (dir, sqlite, hook) = setup_sqlite();
    (dir, Store::from(sqlite), hook)
}

/// `setup`, keeping the SQLite backend itself, for the tests that look at its connections.
fn setup_sqlite() -> (tempfile::TempDir, Sqlite, String) {
    let dir = tempfile::tempdir().unwrap();
    let store = Sqlite::open(&dir.path().join("t.db")).unwrap();
    let hook = store
        .create_hook(NewHook {
            target_url: "http://127.0.0.1:9/x".into(),
            secret: "whsec_c2VjcmV0".into(),
            authorization: None,
            description: String::new(),
            origin: HookOrigin::Subscription,
            scope: Scope::Everything,
            enabled: true,
            events: vec!["NewOpportunity".into()],
            made_by: None,
            filter: None,
            rate_limit_per_second: None,
        })
        .unwrap();
    (dir, store, hook.id)
}

fn event(trigger: &str) -> NewEvent {
    NewEvent {
        id: crate::ids::event_id(),
        trigger: trigger.into(),
        row_id: Some(1),
        payload: "{\"id\":1}".into(),
        change_id: None,
        script_hash: None,
        resource_name: None,
        event_type: None,
        company_id: None,
        project_id: None,
        judgements: Vec::new(),
    }
}

#[test]
fn a_hooks_run_of_failures_follows_its_records_in_order_within_one_batch() {
    let (_dir, store, hook) = setup();
    for _ in 0..3 {
        store.insert_events(&[event("NewOpportunity")]).unwrap();
    }
    let now = now_ms();
    let claimed = store
        .claim_due(now, 60_000, 10, &HashMap::new(), 10)
        .unwrap()
        .deliveries;
    assert_eq!(claimed.len(), 3);
    let failed = |claim: &ClaimedDelivery, started_at: i64| AttemptRecord {
        outcome: AttemptOutcome::HttpError,
        status_code: Some(500),
        next: NextStep::RetryAt(now + 60_000),
        ..AttemptRecord::delivered(claim, started_at)
    };
    let run = |store: &Store| {
        let hook = store.get_hook(&hook).unwrap().unwrap();
        (hook.failing_since, hook.failures)
    };
    let policy = FailurePolicy::default();
    // Success, failure, success: the last success ends the run the failure began.
    store
        .record_attempts(
            &[
                AttemptRecord::delivered(&claimed[0], now),
                failed(&claimed[1], now + 1),
                AttemptRecord::delivered(&claimed[2], now + 2),
            ],
            &policy,
        )
        .unwrap();
    assert_eq!(run(&store), (None, 0));
    // Failure, success, failure: the run starts again at the last failure.
    store
        .record_attempts(
            &[
                failed(&claimed[0], now + 3),
                AttemptRecord::delivered(&claimed[1], now + 4),
                failed(&claimed[2], now + 5),
            ],
            &policy,
        )
        .unwrap();
    assert_eq!(run(&store), (Some(now + 5), 1));
}

#[test]
fn events_fan_out_to_hooks_of_their_trigger_only() {
    let (_dir, store, hook) = setup();
    let first = event("NewOpportunity");
    assert_eq!(
        store
            .insert_events(&[first.clone(), event("DealWon")])
            .unwrap(),
        1
    );
    let won = another_hook(&store, "won", "DealWon");
    let (opportunity, deal_won) = (event("NewOpportunity"), event("DealWon"));
    assert_eq!(
        store
            .insert_events(&[opportunity.clone(), deal_won.clone()])
            .unwrap(),
        2
    );
    let mut claimed: Vec<(String, String, String)> = store
        .claim_due(now_ms(), 60_000, 10, &HashMap::new(), 10)
        .unwrap()
        .deliveries
        .into_iter()
        .map(|d| (d.hook_id, d.trigger, d.event_id))
        .collect();
    claimed.sort();
    let mut expected = vec![
        (hook.clone(), "NewOpportunity".to_string(), first.id),
        (hook.clone(), "NewOpportunity".to_string(), opportunity.id),
        (won, "DealWon".to_string(), deal_won.id),
    ];
    expected.sort();
    assert_eq!(
        claimed, expected,
        "each hook gets its trigger's events, and only those"
    );
}

#[test]
fn a_claim_leases_and_respects_the_per_hook_limit() {
    let (_dir, store, hook) = setup();
    for _ in 0..5 {
        store.insert_events(&[event("NewOpportunity")]).unwrap();
    }
    let now = now_ms();
    let none = HashMap::new();
    let first = store.claim_due(now, 60_000, 10, &none, 2).unwrap();
    assert_eq!(first.deliveries.len(), 2);
    assert_eq!(first.deliveries[0].attempt, 1);
    // The hook has no room left: nothing to look again for.
    assert_eq!(first.next_due, None);
    let in_flight = HashMap::from([(hook.clone(), 2)]);
    assert!(store
        .claim_due(now, 60_000, 10, &in_flight, 2)
        .unwrap()
        .deliveries
        .is_empty());
    // Before anything is due, the claim says when the oldest will be.
    let early = store.claim_due(now - 5_000, 60_000, 10, &none, 10).unwrap();
    assert!(early.deliveries.is_empty());
    assert!(early.next_due.is_some_and(|t| t > now - 5_000 && t <= now));
    // A claim that stops at its limit leaves the rest due at once.
    let partial = store.claim_due(now, 60_000, 1, &none, 10).unwrap();
    assert_eq!(partial.deliveries.len(), 1);
    assert!(partial.next_due.is_some_and(|t| t <= now));
    // All that is due claimed, with room left: next is when a lease taken above runs out.
    let rest = store.claim_due(now, 60_000, 10, &none, 10).unwrap();
    assert_eq!(rest.deliveries.len(), 2);
    assert_eq!(rest.next_due, Some(now + 60_000));
    // A lease that ran out (the worker died) makes the delivery due again.
    let later = store
        .claim_due(now + 60_001, 60_000, 10, &none, 10)
        .unwrap();
    assert_eq!(later.deliveries.len(), 5);
    assert_eq!(later.next_due, None, "all five claimed, nothing else waits");
}

/// A worker's claim of up to 10 deliveries, leased for a minute, against `capacity`.
fn claim_against(store: &Store, now: i64, capacity: &Capacity) -> ClaimOutcome {
    claim_up_to(store, now, 10, capacity)
}

/// A worker's claim of up to `limit` deliveries, leased for a minute, against `capacity`.
fn claim_up_to(store: &Store, now: i64, limit: usize, capacity: &Capacity) -> ClaimOutcome {
    let claim = Claim {
        now,
        lease_ms: 60_000,
        limit,
        capacity,
    };
    store
        .record_and_claim(&[], &[], &FailurePolicy::default(), &claim)
        .unwrap()
        .0
}

#[test]
fn fresh_deliveries_are_leased_to_the_worker_while_it_has_room() {
    let (_dir, store, hook) = setup();
    let capacity = Capacity::new(2, 10);
    let lease = DirectLease {
        capacity: &capacity,
        lease_ms: 60_000,
    };
    let events: Vec<NewEvent> = (0..3).map(|_| event("NewOpportunity")).collect();
    // Closed (no worker runs): everything waits for a claim.
    let stored = store
        .commit_consumed_changes(&Consumed::positions(0, 0), &events[..1], &[], Some(&lease))
        .unwrap();
    assert_eq!((stored.deliveries, stored.leased.len()), (1, 0));
    capacity.open();
    let before = now_ms();
    let stored = store
        .commit_consumed_changes(&Consumed::positions(0, 0), &events[1..], &[], Some(&lease))
        .unwrap();
    assert_eq!((stored.deliveries, stored.leased.len()), (2, 2));
    assert_eq!(capacity.held(Some(&hook)), 2);
    let leased = &stored.leased[0];
    assert_eq!(
        (leased.attempt, leased.event_id.as_str()),
        (1, events[1].id.as_str())
    );
    assert_eq!(leased.payload, events[1].payload);
    assert_eq!(leased.secret, "whsec_c2VjcmV0", "opened for signing");
    assert!(leased.leased_until >= before + 60_000);
    assert_eq!(
        store.delivery_status(&leased.message_id).unwrap(),
        Some(DeliveryStatus::Delivering)
    );
    // The hook is full: a claim takes nothing, and says a freed slot has the first one to take.
    let claimed = claim_against(&store, now_ms(), &capacity);
    assert!(claimed.deliveries.is_empty());
    assert!(claimed.due_without_room);
    capacity.give_back(&hook);
    let claimed = claim_against(&store, now_ms(), &capacity);
    assert_eq!(claimed.deliveries.len(), 1);
    assert_eq!(claimed.deliveries[0].event_id, events[0].id);
    assert_eq!(capacity.held(None), 2);
}

#[test]
fn room_taken_by_a_transaction_that_fails_is_given_back() {
    let (_dir, store, hook) = setup();
    let capacity = Capacity::new(8, 8);
    capacity.open();
    let lease = DirectLease {
        capacity: &capacity,
        lease_ms: 60_000,
    };
    // The position moved meanwhile (another consumer): nothing is stored, nothing held.
    let failed = store.commit_consumed_changes(
        &Consumed::positions(5, 6),
        &[event("NewOpportunity")],
        &[],
        Some(&lease),
    );
    assert!(matches!(failed, Err(StoreError::ConcurrentConsumer)));
    assert_eq!(capacity.held(Some(&hook)), 0);
    // A batch whose second event was stored already fails after the first event's delivery
    // took its room: that room comes back.
    let twice = event("NewOpportunity");
    store
        .commit_consumed_changes(
            &Consumed::positions(0, 0),
            std::slice::from_ref(&twice),
            &[],
            Some(&lease),
        )
        .unwrap();
    assert_eq!(capacity.held(None), 1);
    let failed = store.commit_consumed_changes(
        &Consumed::positions(0, 0),
        &[event("NewOpportunity"), twice],
        &[],
        Some(&lease),
    );
    assert!(failed.is_err());
    assert_eq!(capacity.held(None), 1, "only the committed lease is held");
}

#[test]
fn deleting_the_hook_discards_what_waits() {
    let (_dir, store, hook) = setup();
    store.insert_events(&[event("NewOpportunity")]).unwrap();
    assert!(store.delete_hook(&hook).unwrap());
    let outcome = store
        .claim_due(now_ms(), 1000, 10, &HashMap::new(), 8)
        .unwrap();
    assert!(outcome.deliveries.is_empty());
    assert_eq!(outcome.next_due, None);
}

#[test]
fn enabled_hooks_among_leaves_out_disabled_and_deleted_ones() {
    let (_dir, store, hook) = setup();
    let ids = [hook.clone(), "hook_gone".to_owned()];
    let enabled = store.enabled_hooks_among(&ids).unwrap();
    assert!(enabled.contains(&hook) && enabled.len() == 1, "{enabled:?}");
    store
        .update_hook(
            &hook,
            &crate::store::HookPatch {
                enabled: Some(false),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(store.enabled_hooks_among(&ids).unwrap().is_empty());
}

#[test]
fn claims_handed_back_are_due_again_as_if_never_claimed() {
    let (_dir, store, _hook) = setup();
    store.insert_events(&[event("NewOpportunity")]).unwrap();
    let now = now_ms();
    let none = HashMap::new();
    let claimed = store
        .claim_due(now, 60_000, 10, &none, 8)
        .unwrap()
        .deliveries;
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        store.delivery_status(&claimed[0].message_id).unwrap(),
        Some(DeliveryStatus::Delivering)
    );
    // Not once its lease is over: by then it may be someone else's.
    let stale = ClaimedDelivery {
        leased_until: claimed[0].leased_until - 1,
        ..claimed[0].clone()
    };
    store.hand_back(&[&stale], now).unwrap();
    assert_eq!(
        store.delivery_status(&claimed[0].message_id).unwrap(),
        Some(DeliveryStatus::Delivering)
    );
    store.hand_back(&[&claimed[0]], now).unwrap();
    assert_eq!(
        store.delivery_status(&claimed[0].message_id).unwrap(),
        Some(DeliveryStatus::Pending)
    );
    let again = store
        .claim_due(now, 60_000, 10, &none, 8)
        .unwrap()
        .deliveries;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].seq, claimed[0].seq);
    assert_eq!(again[0].attempt, 1, "a claim handed back costs no attempt");
}

/// Every statement the writer has prepared, with how often SQLite prepared it again.
fn reprepares(store: &Sqlite) -> Vec<(String, i32)> {
    let conn = store.writer();
    let mut counts = Vec::new();
    // SAFETY: the writer's lock is held, so no statement is finalised while we walk the list;
    // sqlite3_next_stmt, sqlite3_sql and sqlite3_stmt_status only read.
    unsafe {
        let db = conn.handle();
        let mut stmt = rusqlite::ffi::sqlite3_next_stmt(db, std::ptr::null_mut());
        while !stmt.is_null() {
            let sql = std::ffi::CStr::from_ptr(rusqlite::ffi::sqlite3_sql(stmt));
            let n = rusqlite::ffi::sqlite3_stmt_status(
                stmt,
                rusqlite::ffi::SQLITE_STMTSTATUS_REPREPARE,
                0,
            );
            counts.push((sql.to_string_lossy().into_owned(), n));
            stmt = rusqlite::ffi::sqlite3_next_stmt(db, stmt);
        }
    }
    counts
}

/// SQLite prepares a statement again after a schema change. A bound `LIMIT` in the claim used
/// to make that permanent: every later claim prepared its statement once more.
#[test]
fn claims_and_records_keep_their_prepared_statements() {
    let (dir, sqlite, _hook) = setup_sqlite();
    let store = Store::from(sqlite.clone());
    let mut now = now_ms();
    let cycle = |now: i64| {
        store.insert_events(&[event("NewOpportunity")]).unwrap();
        let capacity = Capacity::new(8, 100);
        capacity.open();
        let claimed = claim_against(&store, now, &capacity);
        let records: Vec<AttemptRecord> = claimed
            .deliveries
            .iter()
            .map(|c| AttemptRecord::delivered(c, now))
            .collect();
        store
            .record_attempts(&records, &FailurePolicy::default())
            .unwrap();
    };
    cycle(now);
    // The application changes its schema: every cached statement is prepared once more.
    rusqlite::Connection::open(dir.path().join("t.db"))
        .unwrap()
        .execute_batch("CREATE TABLE Unrelated (id INTEGER PRIMARY KEY)")
        .unwrap();
    for _ in 0..20 {
        now += 7;
        cycle(now);
    }
    let again: Vec<_> = reprepares(&sqlite)
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .collect();
    assert!(again.is_empty(), "prepared again and again: {again:#?}");
}

/// A hook of everything for `trigger`, besides `setup`'s.
fn another_hook(store: &Store, path: &str, trigger: &str) -> String {
    store
        .create_hook(NewHook {
            target_url: format!("http://127.0.0.1:9/{path}"),
            secret: "whsec_c2VjcmV0".into(),
            authorization: None,
            description: String::new(),
            origin: HookOrigin::Subscription,
            scope: Scope::Everything,
            enabled: true,
            events: vec![trigger.into()],
            made_by: None,
            filter: None,
            rate_limit_per_second: None,
        })
        .unwrap()
        .id
}

/// Three hooks of `NewOpportunity` (in id order) and `events` events stored in one batch, so
/// that every delivery has the same time: oldest-first would give the first hook every turn
/// while it has any left; taking turns does not.
fn three_hooks_with_events(events: usize) -> (tempfile::TempDir, Store, [String; 3]) {
    let (dir, store, first) = setup();
    let mut hooks = [
        first,
        another_hook(&store, "b", "NewOpportunity"),
        another_hook(&store, "c", "NewOpportunity"),
    ];
    hooks.sort();
    let batch: Vec<NewEvent> = (0..events).map(|_| event("NewOpportunity")).collect();
    store.insert_events(&batch).unwrap();
    (dir, store, hooks)
}

#[test]
fn hooks_take_turns_and_a_full_claim_stops_walking() {
    let (_dir, store, hooks) = three_hooks_with_events(4);
    let capacity = Capacity::new(2, 100);
    capacity.open();
    let claim_of_two = |now: i64| {
        let outcome = claim_up_to(&store, now, 2, &capacity);
        let taken: Vec<&str> = outcome
            .deliveries
            .iter()
            .map(|d| d.hook_id.as_str())
            .collect();
        let hook = taken[0].to_owned();
        assert!(taken.iter().all(|h| *h == hook), "{taken:?}");
        for _ in 0..taken.len() {
            capacity.give_back(&hook);
        }
        (hook, taken.len(), outcome.next_due)
    };
    let now = now_ms();
    // Each claim fills from one hook and says to look again at once, since others wait.
    for (turn, expected) in [&hooks[0], &hooks[1], &hooks[2], &hooks[0]]
        .iter()
        .enumerate()
    {
        let (hook, taken, next_due) = claim_of_two(now);
        assert_eq!((&hook, taken), (*expected, 2), "turn {turn}");
        assert_eq!(next_due, Some(now), "turn {turn}");
    }
    // Going round from the middle still reaches the hooks before it: hooks[1] and [2] have
    // two each left, and hooks[0] none due.
    let (hook, taken, _) = claim_of_two(now);
    assert_eq!((hook.as_str(), taken), (hooks[1].as_str(), 2));
    let (hook, taken, _) = claim_of_two(now);
    assert_eq!((hook.as_str(), taken), (hooks[2].as_str(), 2));
    let last = claim_up_to(&store, now, 2, &capacity);
    assert!(last.deliveries.is_empty());
    assert_eq!(
        last.next_due,
        Some(now + 60_000),
        "when the first lease runs out"
    );
    // The worker's room in all runs out on the first hook: the claim stops there too.
    let small = Capacity::new(2, 1);
    small.open();
    store.insert_events(&[event("NewOpportunity")]).unwrap();
    let now = now_ms();
    let outcome = claim_against(&store, now, &small);
    assert_eq!(outcome.deliveries.len(), 1);
    assert_eq!(outcome.deliveries[0].hook_id, hooks[0]);
    assert_eq!(
        outcome.next_due,
        Some(now),
        "the other hooks wait for a slot"
    );
}

#[test]
fn a_claim_gives_every_waiting_hook_a_turn_before_taking_more_of_any() {
    let (_dir, store, hooks) = three_hooks_with_events(10);
    let now = now_ms();
    let hooks_of = |outcome: &ClaimOutcome| -> Vec<String> {
        outcome
            .deliveries
            .iter()
            .map(|d| d.hook_id.clone())
            .collect()
    };
    let twice_each: Vec<String> = hooks.iter().flat_map(|h| [h.clone(), h.clone()]).collect();
    // Room for six: a turn of two for each hook, of the same two (oldest) events, and the
    // claim says to look again at once for the rest.
    let capacity = Capacity::new(4, 100).taking_turns_of(2);
    capacity.open();
    let outcome = claim_up_to(&store, now, 6, &capacity);
    assert_eq!(hooks_of(&outcome), twice_each);
    let events: Vec<&str> = outcome
        .deliveries
        .iter()
        .map(|d| d.event_id.as_str())
        .collect();
    assert!(
        events.chunks(2).all(|pair| pair == &events[..2]),
        "the same two events for every hook: {events:?}"
    );
    assert_eq!(outcome.next_due, Some(now));
    // Room to spare once every hook had its turn: a second round gives each the rest of its
    // room (four each), in turn.
    let roomier = Capacity::new(4, 100).taking_turns_of(2);
    roomier.open();
    let outcome = claim_up_to(&store, now, 100, &roomier);
    let expected: Vec<String> = twice_each.iter().chain(&twice_each).cloned().collect();
    assert_eq!(hooks_of(&outcome), expected);
    assert_eq!(outcome.next_due, None, "every hook is full");
    assert!(outcome.due_without_room);
    assert_eq!(roomier.held(None), 12);
    // A hook's own room, set apart from the others', bounds its share.
    let uneven = Capacity::new(4, 100).taking_turns_of(2);
    uneven.open();
    uneven.set_room(&hooks[1], 1);
    assert_eq!(uneven.room(&hooks[1]), 1);
    uneven.reset_room(&hooks[2]);
    assert_eq!(uneven.room(&hooks[2]), 4, "the default");
    let outcome = claim_up_to(&store, now, 100, &uneven);
    let taken_by = |hook: &str| {
        outcome
            .deliveries
            .iter()
            .filter(|d| d.hook_id == hook)
            .count()
    };
    assert_eq!(
        (
            taken_by(&hooks[0]),
            taken_by(&hooks[1]),
            taken_by(&hooks[2])
        ),
        (4, 1, 4)
    );
}

#[test]
fn a_saturated_hooks_backlog_does_not_hide_another_hooks_delivery() {
    let (_dir, store, busy) = setup();
    for _ in 0..50 {
        store.insert_events(&[event("NewOpportunity")]).unwrap();
    }
    let other = another_hook(&store, "other", "DealWon");
    store.insert_events(&[event("DealWon")]).unwrap();
    let in_flight = HashMap::from([(busy.clone(), 8)]);
    let claimed = store
        .claim_due(now_ms(), 60_000, 10, &in_flight, 8)
        .unwrap();
    assert_eq!(claimed.deliveries.len(), 1);
    assert_eq!(claimed.deliveries[0].hook_id, other);
    assert_eq!(claimed.next_due, None, "the busy hook has no room");
    // With room again, the busy hook's oldest come first, up to its room.
    let claimed = store
        .claim_due(now_ms(), 60_000, 100, &HashMap::new(), 8)
        .unwrap()
        .deliveries;
    assert_eq!(claimed.len(), 8);
    assert!(claimed.iter().all(|c| c.hook_id == busy));
}

#[test]
fn the_next_step_reads_as_words_and_times_in_the_log() {
    assert_eq!(
        NextStep::RetryAt(1_796_308_017_783).to_string(),
        "retry at 2026-12-03T14:26:57.783Z"
    );
    assert_eq!(NextStep::Delivered.to_string(), "delivered");
    assert!(NextStep::HookGone.to_string().contains("410"));
}
