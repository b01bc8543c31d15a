//! The storage suite: what herald needs of its database, written once against a backend. Each
//! test is a function over a `Backend`; `storage_suite!` runs all of them for one backend, so that
//! a second backend (PostgreSQL) runs the very same checks.

use std::collections::{BTreeSet, HashMap};

use herald::clock::now_ms;
use herald::store::{
    Action, AttemptOutcome, AttemptRecord, ClaimedDelivery, DeliveryStatus, EventAction,
    EventFilter, FailurePolicy, HookFilter, HookOrigin, HookPatch, NewEvent, NewHook, NextStep,
    Scope, Store, StoreError,
};

/// A store on a fresh database of one backend, and the application's own way to write to it.
pub struct Backend {
    pub store: Store,
    /// Runs the application's SQL (as another process would), not through herald.
    pub app: Box<dyn Fn(&str)>,
    _keep: Box<dyn std::any::Any>,
}

pub fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("storage.db");
    let store = Store::open(&path).unwrap();
    Backend {
        store,
        app: Box::new(move |sql| {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.busy_timeout(std::time::Duration::from_secs(5))
                .unwrap();
            conn.execute_batch(sql).unwrap();
        }),
        _keep: Box::new(dir),
    }
}

macro_rules! storage_suite {
    ($backend:ident: $($test:ident),* $(,)?) => {
        mod $backend {
            $(
                #[test]
                fn $test() {
                    super::$test(&super::$backend());
                }
            )*
        }
    };
}

storage_suite!(sqlite:
    hooks_are_created_listed_changed_and_deleted,
    the_grid_ticks_and_clears_events,
    a_subscription_is_removed_only_by_the_token_that_made_it,
    events_fan_out_to_the_hooks_of_their_trigger_and_scope_only,
    claims_lease_within_the_room_and_records_move_deliveries_on,
    the_deliveries_log_pages_newest_first_without_gaps,
    events_are_retried_and_discarded_by_status,
    retention_purges_old_final_events_only,
    changes_are_consumed_once_with_the_position,
);

fn hook(target: &str, scope: Scope, events: &[&str]) -> NewHook {
    NewHook {
        target_url: target.into(),
        secret: "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ=".into(),
        authorization: None,
        description: String::new(),
        origin: HookOrigin::Admin,
        scope,
        enabled: true,
        events: events.iter().map(|e| e.to_string()).collect(),
        made_by: None,
    }
}

fn event(trigger: &str, company: Option<i64>, project: Option<i64>) -> NewEvent {
    NewEvent {
        id: herald::ids::event_id(),
        trigger: trigger.into(),
        row_id: Some(1),
        payload: "{\"id\":1}".into(),
        change_id: None,
        script_hash: None,
        resource_name: Some("Deal".into()),
        event_type: Some("create".into()),
        company_id: company,
        project_id: project,
    }
}

fn record(delivery: &ClaimedDelivery, outcome: AttemptOutcome, next: NextStep) -> AttemptRecord {
    AttemptRecord {
        delivery_seq: delivery.seq,
        url: delivery.target_url.clone(),
        hook_id: delivery.hook_id.clone(),
        event_id: delivery.event_id.clone(),
        message_id: delivery.message_id.clone(),
        attempt: delivery.attempt,
        started_at: now_ms(),
        duration_ms: 3,
        outcome,
        status_code: Some(if outcome == AttemptOutcome::Success {
            200
        } else {
            500
        }),
        request_headers: "{}".into(),
        response_headers: Some("{}".into()),
        response_body: Some("ok".into()),
        error: None,
        next,
    }
}

/// A hook of `NewOpportunity` with no scope: the plain receiver most checks need.
fn opportunity_hook(store: &Store) -> herald::store::Hook {
    store
        .create_hook(hook(
            "https://r.example/",
            Scope::Everything,
            &["NewOpportunity"],
        ))
        .unwrap()
}

/// Records one attempt of `delivery`.
fn record_one(store: &Store, delivery: &ClaimedDelivery, outcome: AttemptOutcome, next: NextStep) {
    store
        .record_attempts(
            &[record(delivery, outcome, next)],
            &FailurePolicy::default(),
        )
        .unwrap();
}

/// Claims every due delivery (up to 1,000), leased for a minute.
fn claim_all(store: &Store) -> Vec<ClaimedDelivery> {
    store
        .claim_due(now_ms(), 60_000, 1_000, &HashMap::new(), 1_000)
        .unwrap()
        .deliveries
}

/// The ids of the events a hook has, newest first.
fn events_of(store: &Store, hook_id: &str) -> Vec<String> {
    store
        .hook_events(hook_id, &EventFilter::default(), None, 100)
        .unwrap()
        .items
        .into_iter()
        .map(|e| e.event_id)
        .collect()
}

fn hooks_are_created_listed_changed_and_deleted(backend: &Backend) {
    let store = &backend.store;
    let mut new = hook(
        "https://a.example/hooks",
        Scope::Company(2),
        &["Deal.create"],
    );
    new.authorization = Some("Bearer sk_live_abc".into());
    new.description = "CRM".into();
    let a = store.create_hook(new).unwrap();
    let b = store
        .create_hook(hook(
            "https://b.example/",
            Scope::Project(10),
            &["NewOpportunity"],
        ))
        .unwrap();
    assert!(a.id.starts_with("hook_"));
    let got = store.get_hook(&a.id).unwrap().unwrap();
    assert_eq!(got.secret, "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ=", "opened");
    assert_eq!(got.authorization.as_deref(), Some("Bearer sk_live_abc"));
    assert_eq!(
        (got.scope, got.events.clone(), got.description.as_str()),
        (Scope::Company(2), vec!["Deal.create".to_string()], "CRM")
    );

    let all = store
        .list_hooks(&HookFilter::default(), None, 10)
        .unwrap()
        .items;
    assert_eq!(
        all.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(),
        [b.id.as_str(), a.id.as_str()],
        "newest first"
    );
    let company = HookFilter {
        company_id: Some(2),
        project_id: None,
    };
    let listed = store.list_hooks(&company, None, 10).unwrap().items;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, a.id);
    let after_b = store
        .list_hooks(&HookFilter::default(), Some(&b.id), 10)
        .unwrap()
        .items;
    assert_eq!(after_b.len(), 1);
    assert_eq!(after_b[0].id, a.id, "the cursor pages on");

    let patch = HookPatch {
        description: Some("ERP".into()),
        authorization: Some(None),
        scope: Some(Scope::Project(11)),
        ..HookPatch::default()
    };
    let patched = store.update_hook(&a.id, &patch).unwrap().unwrap();
    assert_eq!(patched.description, "ERP");
    assert_eq!(patched.authorization, None, "removed");
    let reread = store.get_hook(&a.id).unwrap().unwrap();
    assert_eq!(
        (reread.scope, reread.authorization),
        (Scope::Project(11), None)
    );
    assert!(store.update_hook("hook_nope", &patch).unwrap().is_none());

    let rotated = store
        .rotate_secret(&a.id, "whsec_bmV3LXNlY3JldA==", now_ms() + 60_000)
        .unwrap()
        .unwrap();
    assert_eq!(rotated.secret, "whsec_bmV3LXNlY3JldA==");
    assert_eq!(
        rotated.previous_secret.map(|(s, _)| s).as_deref(),
        Some("whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ=")
    );

    assert!(store.delete_hook(&a.id).unwrap());
    assert!(!store.delete_hook(&a.id).unwrap(), "gone already");
    assert!(store.get_hook(&a.id).unwrap().is_none());
    assert!(!store.hook_exists(&a.id).unwrap());
    assert!(store.hook_exists(&b.id).unwrap());
}

fn the_grid_ticks_and_clears_events(backend: &Backend) {
    let store = &backend.store;
    let h = store
        .create_hook(hook("https://a.example/", Scope::Company(1), &[]))
        .unwrap();
    assert_eq!(
        store.set_hook_event(&h.id, "Deal.update", true).unwrap(),
        Some(true)
    );
    assert_eq!(
        store.set_hook_event(&h.id, "Deal.update", true).unwrap(),
        Some(false),
        "ticked already"
    );
    store.set_hook_event(&h.id, "Contact.delete", true).unwrap();
    assert_eq!(
        store.get_hook(&h.id).unwrap().unwrap().events,
        ["Contact.delete", "Deal.update"]
    );
    assert_eq!(
        store.subscribed_resource_events().unwrap(),
        BTreeSet::from(["Contact.delete".to_string(), "Deal.update".to_string()])
    );
    assert_eq!(
        store.set_hook_event(&h.id, "Deal.update", false).unwrap(),
        Some(true)
    );
    assert_eq!(
        store.hooks_per_event().unwrap(),
        [("Contact.delete".to_string(), 1)]
    );
    assert_eq!(
        store
            .set_hook_event("hook_nope", "Deal.update", true)
            .unwrap(),
        None
    );
    // A disabled hook's resource events are not tracked.
    let disable = HookPatch {
        enabled: Some(false),
        ..HookPatch::default()
    };
    store.update_hook(&h.id, &disable).unwrap();
    assert!(store.subscribed_resource_events().unwrap().is_empty());
    assert!(store
        .enabled_hooks_among(std::slice::from_ref(&h.id))
        .unwrap()
        .is_empty());
}

fn a_subscription_is_removed_only_by_the_token_that_made_it(backend: &Backend) {
    let store = &backend.store;
    let mut mine = hook("https://z.example/", Scope::Everything, &["NewOpportunity"]);
    mine.origin = HookOrigin::Subscription;
    mine.made_by = Some("zapier".into());
    let mine = store.create_hook(mine).unwrap();
    let admins = store
        .create_hook(hook(
            "https://a.example/",
            Scope::Company(1),
            &["NewOpportunity"],
        ))
        .unwrap();
    assert!(!store
        .delete_subscription_made_by(&admins.id, "zapier")
        .unwrap());
    assert!(!store
        .delete_subscription_made_by(&mine.id, "other")
        .unwrap());
    assert!(!store
        .delete_subscription_made_by("hook_nope", "zapier")
        .unwrap());
    assert!(store.get_hook(&admins.id).unwrap().is_some());
    assert!(store
        .delete_subscription_made_by(&mine.id, "zapier")
        .unwrap());
    assert!(store.get_hook(&mine.id).unwrap().is_none());
}

fn events_fan_out_to_the_hooks_of_their_trigger_and_scope_only(backend: &Backend) {
    let store = &backend.store;
    let create = |scope, events: &[&str]| {
        store
            .create_hook(hook("https://r.example/", scope, events))
            .unwrap()
            .id
    };
    let everything = create(Scope::Everything, &["NewOpportunity"]);
    let company_2 = create(Scope::Company(2), &["NewOpportunity"]);
    let project_10 = create(Scope::Project(10), &["NewOpportunity"]);
    let company_3 = create(Scope::Company(3), &["NewOpportunity"]);
    let project_11 = create(Scope::Project(11), &["NewOpportunity"]);
    let other_trigger = create(Scope::Everything, &["DealWon"]);
    let disabled = create(Scope::Everything, &["NewOpportunity"]);
    let disable = HookPatch {
        enabled: Some(false),
        ..HookPatch::default()
    };
    store.update_hook(&disabled, &disable).unwrap();

    let in_project = event("NewOpportunity", Some(2), Some(10));
    let deliveries = store
        .insert_events(std::slice::from_ref(&in_project))
        .unwrap();
    assert_eq!(deliveries, 3);
    for (hook_id, receives) in [
        (&everything, true),
        (&company_2, true),
        (&project_10, true),
        (&company_3, false),
        (&project_11, false),
        (&other_trigger, false),
        (&disabled, false),
    ] {
        let expected = if receives {
            vec![in_project.id.clone()]
        } else {
            Vec::new()
        };
        assert_eq!(events_of(store, hook_id), expected, "{hook_id}");
    }
    // An event nobody receives is not stored at all.
    assert_eq!(
        store.insert_events(&[event("Nobody", None, None)]).unwrap(),
        0
    );
}

fn claims_lease_within_the_room_and_records_move_deliveries_on(backend: &Backend) {
    let store = &backend.store;
    let h = opportunity_hook(store);
    for _ in 0..5 {
        store
            .insert_events(&[event("NewOpportunity", None, None)])
            .unwrap();
    }
    let now = now_ms();
    let in_flight = HashMap::from([(h.id.clone(), 1)]);
    let claimed = store.claim_due(now, 60_000, 10, &in_flight, 3).unwrap();
    assert_eq!(
        claimed.deliveries.len(),
        2,
        "3 per hook, 1 already in flight"
    );
    assert!(claimed
        .deliveries
        .iter()
        .all(|d| d.leased_until == now + 60_000));
    assert_eq!(claimed.deliveries[0].attempt, 1);
    assert_eq!(claimed.deliveries[0].secret, h.secret, "opened for signing");
    let again = store
        .claim_due(now, 60_000, 10, &HashMap::new(), 10)
        .unwrap();
    assert_eq!(
        again.deliveries.len(),
        3,
        "leased ones are not claimed twice"
    );

    let [first, second] = [&claimed.deliveries[0], &claimed.deliveries[1]];
    store
        .record_attempts(
            &[
                record(first, AttemptOutcome::Success, NextStep::Delivered),
                record(
                    second,
                    AttemptOutcome::HttpError,
                    NextStep::RetryAt(now - 1),
                ),
            ],
            &FailurePolicy::default(),
        )
        .unwrap();
    assert_eq!(
        store.delivery_status(&first.message_id).unwrap(),
        Some(DeliveryStatus::Delivered)
    );
    assert_eq!(
        store.delivery_status(&second.message_id).unwrap(),
        Some(DeliveryStatus::Retrying)
    );
    let retried = claim_all(store);
    assert_eq!(retried.len(), 1, "the retry is due; the rest are leased");
    assert_eq!((retried[0].seq, retried[0].attempt), (second.seq, 2));
    let attempts = store.attempts_of(&second.message_id).unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].status_code, Some(500));

    // Handed back, a claim is due again as if never claimed.
    store.hand_back(&[&retried[0]], now_ms()).unwrap();
    let back = claim_all(store);
    assert_eq!((back.len(), back[0].attempt), (1, 2));
    let counts = store.hook_delivery_counts(&h.id).unwrap();
    let count = |status| counts.iter().find(|(s, _)| *s == status).map(|(_, n)| *n);
    assert_eq!(count(DeliveryStatus::Delivered), Some(1));
    assert_eq!(count(DeliveryStatus::Delivering), Some(4));
}

fn the_deliveries_log_pages_newest_first_without_gaps(backend: &Backend) {
    let store = &backend.store;
    let h = opportunity_hook(store);
    let events: Vec<NewEvent> = (0..30)
        .map(|_| event("NewOpportunity", None, None))
        .collect();
    store.insert_events(&events).unwrap();
    let claimed = claim_all(store);
    let records: Vec<AttemptRecord> = claimed
        .iter()
        .enumerate()
        .map(|(i, d)| {
            if i % 3 == 0 {
                record(d, AttemptOutcome::HttpError, NextStep::Failed)
            } else {
                record(d, AttemptOutcome::Success, NextStep::Delivered)
            }
        })
        .collect();
    store
        .record_attempts(&records, &FailurePolicy::default())
        .unwrap();

    let first = store.hook_attempts(&h.id, false, None, 25).unwrap();
    assert_eq!(first.items.len(), 25);
    let second = store
        .hook_attempts(&h.id, false, first.next_cursor, 25)
        .unwrap();
    assert_eq!(second.items.len(), 5);
    assert_eq!(second.next_cursor, None, "the last page says so");
    let seqs: Vec<i64> = first
        .items
        .iter()
        .chain(&second.items)
        .map(|a| a.seq)
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] > w[1]),
        "newest first: {seqs:?}"
    );
    assert_eq!(
        seqs.iter().collect::<BTreeSet<_>>().len(),
        30,
        "no gaps, no repeats"
    );

    let failures = store.hook_attempts(&h.id, true, None, 25).unwrap();
    assert_eq!(failures.items.len(), 10);
    assert!(failures.items.iter().all(|a| a.outcome == "http_error"));
    let detail = store
        .hook_attempt(&h.id, failures.items[0].seq)
        .unwrap()
        .unwrap();
    assert_eq!(detail.payload, "{\"id\":1}");
    assert_eq!(detail.response_body.as_deref(), Some("ok"));
    assert!(store
        .hook_attempt("hook_nope", failures.items[0].seq)
        .unwrap()
        .is_none());

    let failed = EventFilter {
        status: Some(DeliveryStatus::Failed),
        ..EventFilter::default()
    };
    let page = store.hook_events(&h.id, &failed, None, 25).unwrap();
    assert_eq!(page.items.len(), 10);
}

fn events_are_retried_and_discarded_by_status(backend: &Backend) {
    let store = &backend.store;
    let h = opportunity_hook(store);
    let waiting = event("NewOpportunity", None, None);
    let failing = event("NewOpportunity", None, None);
    store
        .insert_events(&[waiting.clone(), failing.clone()])
        .unwrap();
    let since = now_ms();
    assert_eq!(
        store.discard_hook_event(&h.id, &waiting.id).unwrap(),
        EventAction::Done
    );
    assert_eq!(
        store.discard_hook_event(&h.id, &waiting.id).unwrap(),
        EventAction::Conflict(DeliveryStatus::Discarded)
    );
    assert_eq!(
        store.discard_hook_event(&h.id, "evt_nope").unwrap(),
        EventAction::NotFound
    );
    let claimed = claim_all(store);
    assert_eq!(claimed.len(), 1, "the discarded one is not claimed");
    assert_eq!(
        store.retry_hook_event(&h.id, &failing.id).unwrap(),
        EventAction::Conflict(DeliveryStatus::Delivering),
        "not while its attempt is in flight"
    );
    record_one(
        store,
        &claimed[0],
        AttemptOutcome::Timeout,
        NextStep::Failed,
    );
    assert_eq!(
        store.retry_hook_event(&h.id, &failing.id).unwrap(),
        EventAction::Done
    );
    assert_eq!(claim_all(store).len(), 1, "due again");
    // Recovery after an outage: what failed (and, if asked, was discarded) since a time. The
    // failed one is on its way again; the discarded one comes back only when asked for.
    assert_eq!(store.retry_failed_since(&h.id, since, false).unwrap(), 0);
    assert_eq!(store.retry_failed_since(&h.id, since, true).unwrap(), 1);
    let history = store
        .hook_events(&h.id, &EventFilter::default(), None, 10)
        .unwrap();
    let status_of = |id: &str| {
        history
            .items
            .iter()
            .find(|e| e.event_id == id)
            .unwrap()
            .status
    };
    assert_eq!(status_of(&waiting.id), DeliveryStatus::Pending);
    assert_eq!(status_of(&failing.id), DeliveryStatus::Delivering);
}

fn retention_purges_old_final_events_only(backend: &Backend) {
    let store = &backend.store;
    let h = opportunity_hook(store);
    let done = event("NewOpportunity", None, None);
    let waiting = event("NewOpportunity", None, None);
    store.insert_events(std::slice::from_ref(&done)).unwrap();
    let claimed = claim_all(store);
    record_one(
        store,
        &claimed[0],
        AttemptOutcome::Success,
        NextStep::Delivered,
    );
    store.insert_events(std::slice::from_ref(&waiting)).unwrap();
    assert_eq!(
        store.purge_before(now_ms() - 60_000, 100).unwrap(),
        0,
        "too young"
    );
    assert_eq!(store.purge_before(now_ms() + 1, 100).unwrap(), 1);
    assert_eq!(
        events_of(store, &h.id),
        [waiting.id],
        "the waiting one stays"
    );
    assert!(store
        .attempts_of(&claimed[0].message_id)
        .unwrap()
        .is_empty());
}

fn changes_are_consumed_once_with_the_position(backend: &Backend) {
    let store = &backend.store;
    (backend.app)("CREATE TABLE Deal (id INTEGER PRIMARY KEY, title TEXT, amount REAL)");
    assert!(store
        .sync_tracking(&["Deal".to_string()])
        .unwrap()
        .is_empty());
    let problems = store.sync_tracking(&["Missing".to_string()]).unwrap();
    assert_eq!(problems.len(), 1, "a table that does not exist is reported");
    store.sync_tracking(&["Deal".to_string()]).unwrap();
    (backend.app)(
        "INSERT INTO Deal (title, amount) VALUES ('Bridge', 250000);
         UPDATE Deal SET amount = 300000 WHERE title = 'Bridge';
         DELETE FROM Deal WHERE title = 'Bridge';",
    );
    let mut reader = store.change_feed().unwrap();
    let position = reader.position().unwrap();
    let batch = reader.read_after(position, 10).unwrap();
    let actions: Vec<Action> = batch.changes.iter().map(|c| c.action).collect();
    assert_eq!(actions, [Action::Insert, Action::Update, Action::Delete]);
    assert_eq!(batch.changes[1].row["amount"], 300000.0);
    assert_eq!(
        batch.changes[1].old_row.as_ref().unwrap()["amount"],
        250000.0
    );
    assert_eq!(
        batch.changes[2].row["title"], "Bridge",
        "a delete carries the row it removed"
    );

    let through = batch.through.unwrap();
    store
        .commit_consumed_changes(position, through, &[], &[], None)
        .unwrap();
    assert_eq!(reader.position().unwrap(), through);
    assert!(reader.read_after(through, 10).unwrap().changes.is_empty());
    // A consumer that read from a stale position stores nothing.
    let stale = store.commit_consumed_changes(position, through, &[], &[], None);
    assert!(
        matches!(stale, Err(StoreError::ConcurrentConsumer)),
        "{stale:?}"
    );
    // The next change comes after the position, never behind it.
    (backend.app)("INSERT INTO Deal (title) VALUES ('Tower')");
    let next = reader.read_after(through, 10).unwrap();
    assert_eq!(next.changes.len(), 1);
    assert!(next.changes[0].id > through);
}
