//! The delivery worker.
//!
//! One loop starts one task per attempt; finished attempts come back over a channel. Fresh
//! deliveries come from the tracker already leased (`Handoff`); the rest are claimed. Its database
//! work goes in trips, one at a time and beside the attempts: a trip records what finished and
//! claims the next deliveries in one transaction. A hook has at most `max_in_flight_per_hook`
//! attempts in flight, so a slow or dead target holds only its own slots and never the healthy
//! targets' ones, and up to `ROUNDS_AHEAD` times as many more claimed and ready, which start as
//! soon as a slot frees (a hook at most half of what the worker holds, `ROUNDS_AHEAD_IN_ALL`).
//! Under load trips are spaced (`TRIP_SPACING`) so that each carries more. How many rounds a
//! hook gets ahead follows how long its attempts take (`HookPace`), and a ready delivery
//! that has waited a whole time-out goes back to the outbox instead of starting
//! (`READY_WAIT_TIMEOUTS`), so leases stay short however deep the ready queue is.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, Notify};

use super::held::Held;
use super::pace::{hook_room, HookPace, FIRST_ROUNDS_AHEAD, ROUNDS_AHEAD_IN_ALL};
use super::pacer::{in_flight_limit, Load, Pacer, Step, MAX_IDLE};
use super::{Capacity, DirectLease, Dispatcher};
use crate::clock::now_ms;
use crate::config::DeliverySettings;
use crate::metrics::Metrics;
use crate::store::{
    AttemptRecord, Claim, ClaimOutcome, ClaimedDelivery, FailurePolicy, HookHealthChange, NextStep,
    Store, StoreError,
};

/// The loop that keeps deliveries moving.
pub struct Worker {
    store: Store,
    /// Shared by the attempts' tasks: one reference count per attempt, not a copy of its settings.
    dispatcher: Arc<Dispatcher>,
    settings: DeliverySettings,
    /// What the worker holds and may hold, shared with the tracker's leases (`Handoff`).
    capacity: Arc<Capacity>,
    /// Deliveries the tracker leased to this worker as it stored them.
    handed_over: mpsc::UnboundedReceiver<Vec<ClaimedDelivery>>,
    handoff: Handoff,
    /// Notified when new deliveries are stored unleased, so they are claimed at once rather than
    /// at the next look.
    deliveries_waiting: Arc<Notify>,
    metrics: Arc<Metrics>,
}

/// The worker's door for fresh deliveries: the tracker leases them to the worker in the
/// transaction that stores them, while the worker has room, and hands them over once it commits,
/// so that a new event costs no claim (one write transaction the application's writes queue
/// behind) before it goes out.
#[derive(Clone)]
pub struct Handoff {
    capacity: Arc<Capacity>,
    lease_ms: i64,
    to_worker: mpsc::UnboundedSender<Vec<ClaimedDelivery>>,
}

impl Handoff {
    /// The room and lease the store leases fresh deliveries with.
    pub fn lease(&self) -> DirectLease<'_> {
        DirectLease {
            capacity: &self.capacity,
            lease_ms: self.lease_ms,
        }
    }

    /// Gives the worker the deliveries a committed transaction leased to it. A worker already gone
    /// leaves them leased: they go out again when the leases end.
    pub fn hand_over(&self, leased: Vec<ClaimedDelivery>) {
        if !leased.is_empty() {
            let _ = self.to_worker.send(leased);
        }
    }
}

/// Time beyond the attempts' time-outs for recording one before its lease runs out.
const LEASE_MARGIN: Duration = Duration::from_secs(10);
/// The longest a delivery waits in the ready queue, in time-outs: one that has not started by then
/// (its hook turned slow, its slots held by attempts running to the time-out) goes back to the
/// outbox, due at once, to be claimed again when its hook has room. Every lease therefore covers
/// this wait, one attempt and the margin to record it, whatever the depth of the queue.
const READY_WAIT_TIMEOUTS: u32 = 1;

/// What one trip to the database brings back: what it was given to record and hand back (to keep
/// them for the next when it failed), and what it found.
struct Trip {
    records: Vec<AttemptRecord>,
    handed_back: Vec<ClaimedDelivery>,
    result: Result<TripResult, StoreError>,
}

struct TripResult {
    claim: ClaimOutcome,
    /// What the records did to their hooks' standing.
    health: Vec<HookHealthChange>,
    /// Hooks the worker holds ready deliveries for that are no longer enabled (disabled or deleted
    /// since the claim, by an administrator or by this worker).
    stopped_hooks: Vec<String>,
}

impl Worker {
    pub fn new(
        store: Store,
        settings: DeliverySettings,
        deliveries_waiting: Arc<Notify>,
        metrics: Arc<Metrics>,
    ) -> Worker {
        // A hook may have one round in flight and more ready (as many as its pace allows, see
        // `HookPace`); so may the worker. A claim gives every waiting hook a round before it
        // takes more rounds of any.
        let capacity = Arc::new(
            Capacity::new(
                hook_room(
                    settings.max_in_flight_per_hook,
                    settings.max_in_flight,
                    FIRST_ROUNDS_AHEAD,
                ),
                settings
                    .max_in_flight
                    .saturating_mul(1 + ROUNDS_AHEAD_IN_ALL),
            )
            .taking_turns_of(settings.max_in_flight_per_hook),
        );
        let (to_worker, handed_over) = mpsc::unbounded_channel();
        let handoff = Handoff {
            capacity: capacity.clone(),
            lease_ms: lease_ms(&settings),
            to_worker,
        };
        Worker {
            dispatcher: Arc::new(Dispatcher::new(&settings)),
            store,
            settings,
            capacity,
            handed_over,
            handoff,
            deliveries_waiting,
            metrics,
        }
    }

    /// The worker's room, for the API to set a hook's rate limit in at once.
    pub fn capacity(&self) -> Arc<Capacity> {
        self.capacity.clone()
    }

    /// Where the tracker leases fresh deliveries to this worker; it has room once the worker runs.
    pub fn handoff(&self) -> Handoff {
        self.handoff.clone()
    }

    /// Runs until `shutdown` turns true; then hands the deliveries claimed ahead back to the
    /// outbox, lets attempts in flight finish within the delivery time-out, records them, and
    /// returns. An attempt cut off there stays leased and is retried after the lease, by this
    /// process or the next.
    ///
    /// The database work (recording finished attempts, claiming the next deliveries) runs beside
    /// the attempts, never between them: while one transaction is under way, attempts keep
    /// starting from the ready queue and the next transaction takes everything that finished
    /// meanwhile, so a fast receiver is never idle waiting for a commit and a busy one makes the
    /// transactions larger rather than more numerous.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>, alive: Arc<AtomicBool>) {
        alive.store(true, Ordering::SeqCst);
        // The limits are in place before the first lease.
        read_rate_limits(&self.store, &self.capacity).await;
        self.capacity.open();
        let rate_limits = tokio::spawn(keep_rate_limits(self.store.clone(), self.capacity.clone()));
        let _stop_rate_limits = AbortOnDrop(rate_limits);
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<AttemptRecord>();
        let mut held = Held::default();
        let mut unrecorded: Vec<AttemptRecord> = Vec::new();
        // Ready deliveries that waited too long, for the next trip to hand back to the outbox.
        let mut to_hand_back: Vec<ClaimedDelivery> = Vec::new();
        let mut trip: Option<tokio::task::JoinHandle<Trip>> = None;
        // Attempts the trip under way records: sent, and not recorded until it commits.
        let mut recording = 0;
        let mut pace = HookPace::default();
        let per_hook_limit = self.settings.max_in_flight_per_hook;
        let max_in_flight = self.settings.max_in_flight;
        let mut pacer = Pacer::new(
            Instant::now(),
            self.settings.timeout + Duration::from_secs(1),
        );
        let start = |delivery: ClaimedDelivery| {
            let dispatcher = self.dispatcher.clone();
            let done = done_tx.clone();
            tokio::spawn(async move {
                let record = dispatcher.attempt(delivery).await;
                let _ = done.send(record);
            });
        };
        // Starts what has a free slot, while fewer than `in_flight_limit` attempts wait to be
        // recorded; what waited too long for one is to be handed back instead. Returns whether
        // any was (its room is free again: worth a claim).
        let start_ready =
            |held: &mut Held, to_hand_back: &mut Vec<ClaimedDelivery>, unrecorded: usize| -> bool {
                let start_by = must_start_by(&self.settings, now_ms());
                let limit = in_flight_limit(max_in_flight, unrecorded);
                let (startable, too_late) = held.take_startable(per_hook_limit, limit, start_by);
                startable.into_iter().for_each(&start);
                queue_hand_back(&self.capacity, &self.metrics, too_late, to_hand_back)
            };
        loop {
            if *shutdown.borrow() && pacer.stop(Instant::now()) {
                // The tracker leases nothing more to a stopping worker.
                self.capacity.close();
                self.hand_back(held.take_ready(None)).await;
            }
            // Ready deliveries that no slot of their hook reached within a time-out (it turned
            // slow) go back to the outbox before their leases could end.
            if pacer.ready_wait_check_due(Instant::now()) {
                let overdue =
                    held.take_leased_until_before(must_start_by(&self.settings, now_ms()));
                if queue_hand_back(&self.capacity, &self.metrics, overdue, &mut to_hand_back) {
                    pacer.room_freed();
                }
                for hook in pace.forget_idle(|hook| self.capacity.held(Some(hook)) == 0) {
                    self.capacity.reset_room(&hook);
                }
            }
            let load = Load {
                trip_under_way: trip.is_some(),
                free_room: self.capacity.free(),
                ready: held.total_ready,
                in_flight: held.total_in_flight,
                max_in_flight,
                unrecorded: unrecorded.len(),
                to_hand_back: to_hand_back.len(),
            };
            let nap = match pacer.decide(&load, Instant::now()) {
                Step::Stop => {
                    if !unrecorded.is_empty() {
                        tracing::warn!(
                            attempts = unrecorded.len(),
                            "stopping without recording these attempts; their deliveries go out again when their leases end"
                        );
                    }
                    break;
                }
                Step::Trip { claim_limit } => {
                    recording = unrecorded.len();
                    trip = Some(self.start_trip(
                        std::mem::take(&mut unrecorded),
                        std::mem::take(&mut to_hand_back),
                        claim_limit,
                        &held,
                    ));
                    None
                }
                Step::Wait(nap) => Some(nap),
            };
            tokio::select! {
                biased;
                Some(record) = done_rx.recv() => {
                    let mut finished = vec![record];
                    while let Ok(record) = done_rx.try_recv() {
                        finished.push(record);
                    }
                    for record in &finished {
                        held.attempt_ended(record);
                        self.capacity.give_back(&record.hook_id);
                        if let Some(rounds) = pace.attempt_took(&record.hook_id, record.duration_ms, self.settings.timeout) {
                            self.capacity.set_room(&record.hook_id, hook_room(per_hook_limit, max_in_flight, rounds));
                        }
                    }
                    let finished_hooks: Vec<String> = finished.iter().map(|r| r.hook_id.clone()).collect();
                    unrecorded.extend(finished);
                    if !pacer.is_stopping() && start_ready(&mut held, &mut to_hand_back, unrecorded.len() + recording) {
                        pacer.room_freed();
                    }
                    let slot_left_empty = finished_hooks.iter().any(|hook| !held.ready.contains_key(hook));
                    pacer.attempts_finished(Instant::now(), slot_left_empty);
                }
                Some(leased) = self.handed_over.recv() => {
                    if pacer.is_stopping() {
                        self.hand_back(leased).await;
                        continue;
                    }
                    for delivery in leased {
                        self.hold(&mut held, delivery);
                    }
                    if start_ready(&mut held, &mut to_hand_back, unrecorded.len() + recording) {
                        pacer.room_freed();
                    }
                }
                joined = async { trip.as_mut().expect("polled only with a trip").await }, if trip.is_some() => {
                    trip = None;
                    recording = 0;
                    let Trip { records, handed_back, result } = match joined {
                        Ok(trip) => trip,
                        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                        // Cancelled: the runtime is going away under the worker (its leases run
                        // out and another pass sends them).
                        Err(_) => {
                            alive.store(false, Ordering::SeqCst);
                            return;
                        }
                    };
                    match result {
                        Ok(TripResult { claim: ClaimOutcome { deliveries: claimed, next_due, due_without_room }, health, stopped_hooks }) => {
                            pacer.trip_succeeded();
                            self.finished(&records, &health);
                            if pacer.is_stopping() {
                                // Claimed while the stop came: hand them straight back.
                                self.hand_back(claimed).await;
                                continue;
                            }
                            for delivery in claimed {
                                self.hold(&mut held, delivery);
                            }
                            // A hook disabled (here, for failing, or by an administrator), answering
                            // 410 Gone or deleted sends nothing more from the ready queue.
                            let disabled_here = health.iter().filter_map(|change| match change {
                                HookHealthChange::Disabled { hook_id, .. } => Some(hook_id),
                                HookHealthChange::Warned { .. } => None,
                            });
                            let gone = records.iter().filter(|r| r.next == NextStep::HookGone).map(|r| &r.hook_id);
                            let mut stopped = Vec::new();
                            for hook in disabled_here.chain(gone).chain(&stopped_hooks) {
                                stopped.extend(held.take_ready(Some(hook)));
                            }
                            self.hand_back(stopped).await;
                            if start_ready(&mut held, &mut to_hand_back, unrecorded.len()) {
                                pacer.room_freed();
                            }
                            pacer.claim_came_back(next_due, due_without_room, now_ms());
                        }
                        Err(e) => {
                            tracing::warn!("cannot record {} attempts or claim deliveries yet: {e}", records.len());
                            pacer.trip_failed(Instant::now(), !records.is_empty());
                            unrecorded.splice(0..0, records);
                            to_hand_back.splice(0..0, handed_back);
                        }
                    }
                }
                _ = self.deliveries_waiting.notified(), if !pacer.is_stopping() => {
                    pacer.deliveries_stored();
                }
                _ = shutdown.changed(), if !pacer.is_stopping() => {}
                _ = tokio::time::sleep(nap.map_or(MAX_IDLE, |nap| nap.length)), if trip.is_none() => {
                    if let Some(nap) = &nap {
                        pacer.napped(nap);
                    }
                }
            }
        }
        alive.store(false, Ordering::SeqCst);
    }

    /// Records `records`, hands `handed_back` back and claims up to `limit` deliveries in one
    /// transaction, on a blocking thread, while the loop goes on starting attempts; the claim also
    /// says when to look again.
    fn start_trip(
        &self,
        records: Vec<AttemptRecord>,
        handed_back: Vec<ClaimedDelivery>,
        limit: usize,
        held: &Held,
    ) -> tokio::task::JoinHandle<Trip> {
        let store = self.store.clone();
        let ready_hooks: Vec<String> = held.ready.keys().cloned().collect();
        let capacity = self.capacity.clone();
        let lease_ms = self.handoff.lease_ms;
        let policy = self.failure_policy();
        tokio::task::spawn_blocking(move || {
            let claim = Claim {
                now: now_ms(),
                lease_ms,
                limit,
                capacity: &capacity,
            };
            let result = store
                .record_and_claim(&records, &handed_back, &policy, &claim)
                .and_then(|(claim, health)| {
                    let enabled = store.enabled_hooks_among(&ready_hooks)?;
                    let stopped_hooks = ready_hooks
                        .into_iter()
                        .filter(|hook| !enabled.contains(hook))
                        .collect();
                    Ok(TripResult {
                        claim,
                        health,
                        stopped_hooks,
                    })
                });
            Trip {
                records,
                handed_back,
                result,
            }
        })
    }

    /// Queues a delivery leased to this worker (claimed or handed over) to start when a slot
    /// frees; a second lease of one it holds already gives its room back.
    fn hold(&self, held: &mut Held, delivery: ClaimedDelivery) {
        let (seq, hook) = (delivery.seq, delivery.hook_id.clone());
        if !held.add_ready(delivery) {
            self.capacity.give_back(&hook);
            tracing::warn!(
                delivery_seq = seq,
                "leased a delivery this worker already holds; ignoring the second lease"
            );
        }
    }

    /// Hands deliveries claimed but never sent back to the outbox, and their room to the
    /// capacity. When that fails their leases run out instead, and they are sent after that.
    async fn hand_back(&self, claims: Vec<ClaimedDelivery>) {
        if claims.is_empty() {
            return;
        }
        for claim in &claims {
            self.capacity.give_back(&claim.hook_id);
        }
        let store = self.store.clone();
        let count = claims.len();
        let handed_back = tokio::task::spawn_blocking(move || {
            store.hand_back(&claims.iter().collect::<Vec<_>>(), now_ms())
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        if let Err(e) = handed_back {
            tracing::warn!("cannot hand {count} unsent deliveries back; they go out when their leases end: {e}");
        }
    }

    fn failure_policy(&self) -> FailurePolicy {
        FailurePolicy {
            disable_after_ms: self
                .settings
                .disable_failing_after
                .map(|d| d.as_millis() as i64),
        }
    }
}

impl Worker {
    /// Logs and counts attempts once they are recorded, and what they did to their hooks.
    fn finished(&self, records: &[AttemptRecord], health: &[HookHealthChange]) {
        for change in health {
            match change {
                HookHealthChange::Warned {
                    hook_id,
                    failing_since,
                    failures,
                } => {
                    self.metrics.hook_failure_warned();
                    tracing::warn!(
                        %hook_id,
                        failing_since = %crate::clock::rfc3339_ms(*failing_since),
                        failures,
                        "every attempt to this hook has failed for half the window; it will be disabled if none succeeds"
                    );
                }
                HookHealthChange::Disabled {
                    hook_id,
                    failing_since,
                    failures,
                } => {
                    self.metrics.hook_disabled();
                    tracing::warn!(
                        %hook_id,
                        failing_since = %crate::clock::rfc3339_ms(*failing_since),
                        failures,
                        "hook disabled: every attempt failed for the whole window; re-enable it and retry its failed events to recover"
                    );
                }
            }
        }
        for record in records {
            self.metrics
                .attempt_finished(record.outcome.as_str(), record.duration_ms);
            tracing::info!(
                event_id = %record.event_id,
                webhook_id = %record.message_id,
                delivery_seq = record.delivery_seq,
                hook_id = %record.hook_id,
                attempt = record.attempt,
                outcome = record.outcome.as_str(),
                status = record.status_code,
                duration_ms = record.duration_ms,
                next = %record.next,
                "attempt finished"
            );
        }
    }
}

/// Ready deliveries that waited too long for a slot: their room goes back to the capacity and they
/// go to `to_hand_back`, for the next trip to hand back to the outbox. Returns whether there were
/// any.
fn queue_hand_back(
    capacity: &Capacity,
    metrics: &Metrics,
    overdue: Vec<ClaimedDelivery>,
    to_hand_back: &mut Vec<ClaimedDelivery>,
) -> bool {
    if overdue.is_empty() {
        return false;
    }
    tracing::debug!(
        deliveries = overdue.len(),
        "ready deliveries waited a whole time-out for a slot; handing them back to the outbox"
    );
    metrics.deliveries_handed_back(overdue.len());
    for delivery in &overdue {
        capacity.give_back(&delivery.hook_id);
    }
    to_hand_back.extend(overdue);
    true
}

/// How long a leased delivery stays leased: long enough to wait in the ready queue (at most
/// `READY_WAIT_TIMEOUTS` time-outs, then it goes back), run its attempt and be recorded. A process
/// that dies mid-attempt leaves its leases to run out; then the deliveries are sent again, which is
/// what at least once costs.
/// Keeps the hooks' rate limits in `capacity` as the database has them, looking every second:
/// a limit set or changed on any node applies within a second.
async fn keep_rate_limits(store: Store, capacity: Arc<Capacity>) {
    loop {
        tokio::time::sleep(RATE_LIMITS_REFRESH).await;
        read_rate_limits(&store, &capacity).await;
    }
}

async fn read_rate_limits(store: &Store, capacity: &Capacity) {
    let read = store.clone();
    match tokio::task::spawn_blocking(move || read.rate_limits()).await {
        Ok(Ok(limits)) => capacity.set_rate_limits(&limits),
        Ok(Err(e)) => tracing::warn!("cannot read the hooks' rate limits: {e}"),
        Err(e) => tracing::warn!("cannot read the hooks' rate limits: {e}"),
    }
}

/// How often the worker reads the hooks' rate limits again.
const RATE_LIMITS_REFRESH: Duration = Duration::from_secs(1);

/// Aborts a task when the scope that runs it ends, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn lease_ms(settings: &DeliverySettings) -> i64 {
    (settings.timeout * (1 + READY_WAIT_TIMEOUTS) + LEASE_MARGIN).as_millis() as i64
}

/// A ready delivery whose lease ends before this (Unix ms) can no longer be sent and recorded in
/// time: one attempt and the margin to record it are all that is left.
fn must_start_by(settings: &DeliverySettings, now: i64) -> i64 {
    now + (settings.timeout + LEASE_MARGIN).as_millis() as i64
}
