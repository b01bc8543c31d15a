//! The delivery worker.
//!
//! One loop starts one task per attempt; finished attempts come back over a channel. Fresh
//! deliveries come from the tracker already leased (`Handoff`); the rest are claimed. Its database
//! work goes in trips, one at a time and beside the attempts: a trip records what finished and
//! claims the next deliveries in one transaction. A hook has at most `max_in_flight_per_hook`
//! attempts in flight, so a slow or dead target holds only its own slots and never the healthy
//! targets' ones, and `ROUNDS_AHEAD` times as many more claimed and ready, which start as soon as
//! a slot frees. Under load trips are spaced (`TRIP_SPACING`) so that each carries more. How many
//! rounds a hook gets ahead follows how long its attempts take (`HookPace`), and a ready delivery
//! that has waited a whole time-out goes back to the outbox instead of starting
//! (`READY_WAIT_TIMEOUTS`), so leases stay short however deep the ready queue is.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::sync::{mpsc, watch, Notify};

use super::retry::{parse_retry_after, AttemptResult, RetryPolicy};
use super::signing::sign;
use super::target::{GuardedResolver, TargetError, TargetPolicy};
use super::{Capacity, DirectLease, RESPONSE_BODY_CAP, USER_AGENT};
use crate::clock::now_ms;
use crate::config::DeliverySettings;
use crate::metrics::Metrics;
use crate::store::{
    AttemptOutcome, AttemptRecord, Claim, ClaimOutcome, ClaimedDelivery, FailurePolicy,
    HookHealthChange, NextStep, Store, StoreError,
};

/// Signs and sends one attempt and says what it came to.
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    policy: Arc<TargetPolicy>,
    retry: RetryPolicy,
}

impl Sender {
    pub fn new(settings: &DeliverySettings) -> Sender {
        let policy = Arc::new(TargetPolicy::of(settings));
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(60))
            .dns_resolver(Arc::new(GuardedResolver {
                policy: policy.clone(),
            }))
            .build()
            .expect("the HTTP client's settings are valid");
        Sender {
            client,
            policy,
            retry: RetryPolicy {
                schedule: settings.retry_schedule.clone(),
                max_retry_after: settings.max_retry_after,
            },
        }
    }

    /// Takes the delivery: its strings move into the record and its payload into the request, so
    /// an attempt copies none of them.
    pub async fn attempt(&self, delivery: ClaimedDelivery) -> AttemptRecord {
        let started_at = now_ms();
        let clock = Instant::now();
        let prepared = self.prepare(&delivery, started_at / 1000);
        let ClaimedDelivery {
            seq,
            message_id,
            attempt,
            hook_id,
            target_url,
            event_id,
            payload,
            ..
        } = delivery;
        let mut record = AttemptRecord {
            delivery_seq: seq,
            url: target_url,
            hook_id,
            event_id,
            message_id,
            attempt,
            started_at,
            duration_ms: 0,
            outcome: AttemptOutcome::ConnectionError,
            status_code: None,
            request_headers: "{}".into(),
            response_headers: None,
            response_body: None,
            error: None,
            next: crate::store::NextStep::Failed,
        };
        let result = match prepared {
            Err((outcome, error)) => {
                record.outcome = outcome;
                record.error = Some(error);
                AttemptResult::Failure { retry_after: None }
            }
            Ok((url, headers)) => {
                record.request_headers = masked_headers_json(&headers);
                self.send(url, headers, payload, &mut record).await
            }
        };
        record.duration_ms = clock.elapsed().as_millis() as i64;
        record.next = self.retry.next_step(attempt, result, now_ms());
        record
    }

    /// The request's URL and headers, or why it cannot be sent at all.
    fn prepare(
        &self,
        delivery: &ClaimedDelivery,
        timestamp: i64,
    ) -> Result<(url::Url, HeaderMap), (AttemptOutcome, String)> {
        let url = self
            .policy
            .parse(&delivery.target_url)
            .map_err(|e| (AttemptOutcome::Refused, e.to_string()))?;
        // An address written in the URL skips the resolver, so it is checked here.
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(address) = literal {
            if let Some(kind) = self.policy.refusal(address) {
                let error = TargetError::Refused {
                    host: address.to_string(),
                    address,
                    kind,
                };
                return Err((AttemptOutcome::Refused, error.to_string()));
            }
        }
        // While a rotated secret's grace period lasts, both signatures go, space-separated, so a
        // receiver still on the old secret and one already on the new both verify.
        let mut signatures = Vec::with_capacity(2);
        for secret in std::iter::once(&delivery.secret).chain(&delivery.previous_secret) {
            signatures.push(
                sign(
                    secret,
                    &delivery.message_id,
                    timestamp,
                    delivery.payload.as_bytes(),
                )
                .map_err(|e| (AttemptOutcome::Refused, format!("cannot sign: {e}")))?,
            );
        }
        let signature = signatures.join(" ");
        let mut headers = HeaderMap::new();
        let mut put = |name: &'static str, value: &str| -> Result<(), (AttemptOutcome, String)> {
            let value = HeaderValue::from_str(value).map_err(|_| {
                (
                    AttemptOutcome::Refused,
                    format!("the {name} header has characters HTTP does not allow"),
                )
            })?;
            headers.insert(HeaderName::from_static(name), value);
            Ok(())
        };
        put("content-type", "application/json")?;
        put("user-agent", USER_AGENT)?;
        put("webhook-id", &delivery.message_id)?;
        put("webhook-timestamp", &timestamp.to_string())?;
        put("webhook-signature", &signature)?;
        put("herald-event", &delivery.trigger)?;
        if let Some(authorization) = &delivery.authorization {
            put("authorization", authorization)?;
        }
        Ok((url, headers))
    }

    async fn send(
        &self,
        url: url::Url,
        headers: HeaderMap,
        payload: String,
        record: &mut AttemptRecord,
    ) -> AttemptResult {
        let sent = self
            .client
            .post(url)
            .headers(headers)
            .body(payload)
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(error) => {
                record.outcome = if error.is_timeout() {
                    AttemptOutcome::Timeout
                } else if refused_by_policy(&error) {
                    AttemptOutcome::Refused
                } else {
                    AttemptOutcome::ConnectionError
                };
                record.error = Some(error_chain(&error));
                return AttemptResult::Failure { retry_after: None };
            }
        };
        let status = response.status();
        record.status_code = Some(status.as_u16());
        record.response_headers = Some(headers_json(response.headers()));
        let retry_after = if matches!(status.as_u16(), 429 | 503) {
            response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()))
        } else {
            None
        };
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = RESPONSE_BODY_CAP - body.len();
                    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    if body.len() >= RESPONSE_BODY_CAP {
                        break;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    record.error = Some(format!(
                        "reading the response body: {}",
                        error_chain(&error)
                    ));
                    break;
                }
            }
        }
        record.response_body = Some(String::from_utf8_lossy(&body).into_owned());
        if status.is_success() {
            record.outcome = AttemptOutcome::Success;
            AttemptResult::Success
        } else {
            record.outcome = AttemptOutcome::HttpError;
            if status == reqwest::StatusCode::GONE {
                AttemptResult::Gone
            } else {
                AttemptResult::Failure { retry_after }
            }
        }
    }
}

fn refused_by_policy(error: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.downcast_ref::<TargetError>().is_some() {
            return true;
        }
        source = e.source();
    }
    false
}

/// reqwest's own message is "error sending request"; the cause is further down the chain.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// Headers as one JSON object, a name's several values joined by ", ", written straight to text
/// (no intermediate map or copy of the headers: this runs twice per attempt).
fn headers_json(headers: &HeaderMap) -> String {
    serde_json::to_string(&HeadersJson {
        headers,
        mask_authorization: false,
    })
    .unwrap_or_else(|_| "{}".into())
}

/// The request headers as logged: the authorization header keeps its scheme and loses its secret.
fn masked_headers_json(headers: &HeaderMap) -> String {
    serde_json::to_string(&HeadersJson {
        headers,
        mask_authorization: true,
    })
    .unwrap_or_else(|_| "{}".into())
}

struct HeadersJson<'a> {
    headers: &'a HeaderMap,
    mask_authorization: bool,
}

impl serde::Serialize for HeadersJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.headers.keys().map(|name| {
            let mut values = self
                .headers
                .get_all(name)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()));
            let mut value = values.next().unwrap_or_default();
            for more in values {
                let joined = value.to_mut();
                joined.push_str(", ");
                joined.push_str(&more);
            }
            if self.mask_authorization && name == reqwest::header::AUTHORIZATION {
                value = std::borrow::Cow::Owned(super::mask_authorization(&value));
            }
            (name.as_str(), value)
        }))
    }
}

/// The loop that keeps deliveries moving.
pub struct Worker {
    store: Store,
    /// Shared by the attempts' tasks: one reference count per attempt, not a copy of its settings.
    sender: Arc<Sender>,
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
    sender: mpsc::UnboundedSender<Vec<ClaimedDelivery>>,
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
            let _ = self.sender.send(leased);
        }
    }
}

/// Time beyond the attempts' time-outs for recording one before its lease runs out.
const LEASE_MARGIN: Duration = Duration::from_secs(10);
/// Claims per transaction at most.
const CLAIM_BATCH: usize = 200;
/// Finished attempts waiting this many start a trip at once, so a transaction stays bounded.
const RECORD_BATCH: usize = 256;
/// How long a finished attempt may wait to be recorded when nothing else needs a trip: records
/// are not on the way of any delivery, so a quiet outbox records several attempts per
/// transaction. A crash in between costs those deliveries a second send when their leases end.
const RECORD_DELAY: Duration = Duration::from_millis(10);
/// Trips start at least this far apart unless one is needed at once (a slot would sit idle, new
/// deliveries were stored, a retry fell due, a stop is under way). Most of a trip's cost is fixed
/// (the transaction, the pages its commit writes, the hand-off to a blocking thread), so under load
/// fewer and larger trips carry the same deliveries for less; the attempts themselves never wait
/// for it, they start from the ready queue.
const TRIP_SPACING: Duration = Duration::from_millis(2);
/// Rounds of attempts claimed ahead for a fast hook, beyond the round in flight: enough to keep its
/// slots full from one trip to the next. A fast receiver empties a round in well under a
/// millisecond, so the ready queue has to cover a whole trip (its wait for the writer included) and
/// the spacing: with two rounds ahead a single loopback hook's slots sat empty for 29 % of its
/// attempts (waiting for the next claim), with eight for 5 %, and throughput rose by a fifth. A
/// slow hook gets fewer (see `HookPace`); the depth costs no lease time (see `READY_WAIT_TIMEOUTS`).
const ROUNDS_AHEAD: usize = 8;
/// Rounds ahead for a hook whose attempts this worker has not timed yet: with one, a ready
/// delivery waits for at most one round of attempts, so at most one time-out.
const FIRST_ROUNDS_AHEAD: usize = 1;
/// The longest a delivery waits in the ready queue, in time-outs: one that has not started by then
/// (its hook turned slow, its slots held by attempts running to the time-out) goes back to the
/// outbox, due at once, to be claimed again when its hook has room. Every lease therefore covers
/// this wait, one attempt and the margin to record it, whatever the depth of the queue.
const READY_WAIT_TIMEOUTS: u32 = 1;
/// How often the ready queue is searched for deliveries that waited too long, and the pace of
/// hooks that hold nothing any more is forgotten.
const READY_WAIT_CHECK: Duration = Duration::from_secs(1);
/// The longest the worker sleeps without looking, in case a delivery was stored by another process.
const MAX_IDLE: Duration = Duration::from_secs(1);

/// What one trip to the database brings back: the records it was given (to keep them when it
/// failed), and what it found.
type Trip = (
    Vec<AttemptRecord>,
    Vec<ClaimedDelivery>,
    Result<TripResult, StoreError>,
);

struct TripResult {
    claim: ClaimOutcome,
    /// What the records did to their hooks' standing.
    health: Vec<HookHealthChange>,
    /// Hooks the worker holds ready deliveries for that are no longer enabled (disabled or deleted
    /// since the claim, by an administrator or by this worker).
    stopped_hooks: Vec<String>,
}

/// The worker's deliveries between the outbox and the receivers: attempts in flight, and deliveries
/// claimed ahead (at most `ROUNDS_AHEAD` more rounds per hook) that start the moment a slot frees,
/// without waiting for the database. Ready deliveries start in the order they were claimed, across hooks,
/// so none waits behind later claims (and past its lease).
#[derive(Default)]
struct Held {
    in_flight: HashMap<String, usize>,
    /// Per hook, ready deliveries with their place in the claim order.
    ready: HashMap<String, VecDeque<(u64, ClaimedDelivery)>>,
    next_place: u64,
    /// Every delivery held, ready or in flight, by seq: a delivery is never held twice.
    seqs: HashSet<i64>,
    total_in_flight: usize,
    total_ready: usize,
}

impl Held {
    /// Queues a claimed delivery; false (and nothing queued) when it is held already.
    fn add_ready(&mut self, delivery: ClaimedDelivery) -> bool {
        if !self.seqs.insert(delivery.seq) {
            return false;
        }
        self.total_ready += 1;
        self.next_place += 1;
        self.ready
            .entry(delivery.hook_id.clone())
            .or_default()
            .push_back((self.next_place, delivery));
        true
    }

    /// Takes every ready delivery that has a free slot under its hook's limit and the worker's,
    /// in claim order, and counts them in flight; with them, taken out but not counted, those that
    /// came to a slot with their lease ending before `start_by` (Unix ms), too late to start.
    fn take_startable(
        &mut self,
        per_hook_limit: usize,
        max_in_flight: usize,
        start_by: i64,
    ) -> (Vec<ClaimedDelivery>, Vec<ClaimedDelivery>) {
        let mut startable = Vec::new();
        let mut too_late = Vec::new();
        while self.total_ready > 0 && self.total_in_flight < max_in_flight {
            let oldest = self
                .ready
                .iter()
                .filter(|(hook, _)| {
                    self.in_flight.get(hook.as_str()).copied().unwrap_or(0) < per_hook_limit
                })
                .filter_map(|(hook, queue)| Some((queue.front()?.0, hook)))
                .min();
            let Some((_, hook)) = oldest else {
                break;
            };
            let hook = hook.clone();
            let queue = self.ready.get_mut(&hook).expect("found above");
            let (_, delivery) = queue.pop_front().expect("not empty");
            if queue.is_empty() {
                self.ready.remove(&hook);
            }
            self.total_ready -= 1;
            if delivery.leased_until < start_by {
                self.seqs.remove(&delivery.seq);
                too_late.push(delivery);
                continue;
            }
            *self.in_flight.entry(hook).or_default() += 1;
            self.total_in_flight += 1;
            startable.push(delivery);
        }
        (startable, too_late)
    }

    fn attempt_ended(&mut self, record: &AttemptRecord) {
        if let Some(n) = self.in_flight.get_mut(&record.hook_id) {
            *n -= 1;
            if *n == 0 {
                self.in_flight.remove(&record.hook_id);
            }
        }
        self.seqs.remove(&record.delivery_seq);
        self.total_in_flight = self.total_in_flight.saturating_sub(1);
    }

    /// The ready deliveries whose lease ends before `deadline` (Unix ms), taken out: they could not
    /// be sent and recorded within it any more.
    fn take_leased_until_before(&mut self, deadline: i64) -> Vec<ClaimedDelivery> {
        let mut taken = Vec::new();
        self.ready.retain(|_, queue| {
            if queue.iter().any(|(_, d)| d.leased_until < deadline) {
                let (kept, overdue): (VecDeque<_>, VecDeque<_>) = std::mem::take(queue)
                    .into_iter()
                    .partition(|(_, d)| d.leased_until >= deadline);
                *queue = kept;
                taken.extend(overdue.into_iter().map(|(_, d)| d));
            }
            !queue.is_empty()
        });
        for delivery in &taken {
            self.seqs.remove(&delivery.seq);
        }
        self.total_ready -= taken.len();
        taken
    }

    /// The ready deliveries of `hook` (or of every hook), taken out: to hand back to the outbox.
    fn take_ready(&mut self, hook: Option<&str>) -> Vec<ClaimedDelivery> {
        let taken: Vec<ClaimedDelivery> = match hook {
            Some(hook) => self
                .ready
                .remove(hook)
                .into_iter()
                .flatten()
                .map(|(_, d)| d)
                .collect(),
            None => self
                .ready
                .drain()
                .flat_map(|(_, queue)| queue)
                .map(|(_, d)| d)
                .collect(),
        };
        for delivery in &taken {
            self.seqs.remove(&delivery.seq);
        }
        self.total_ready -= taken.len();
        taken
    }
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
                settings.max_in_flight_per_hook * (1 + FIRST_ROUNDS_AHEAD),
                settings.max_in_flight * (1 + ROUNDS_AHEAD),
            )
            .taking_turns_of(settings.max_in_flight_per_hook),
        );
        let (sender, handed_over) = mpsc::unbounded_channel();
        let handoff = Handoff {
            capacity: capacity.clone(),
            lease_ms: lease_ms(&settings),
            sender,
        };
        Worker {
            sender: Arc::new(Sender::new(&settings)),
            store,
            settings,
            capacity,
            handed_over,
            handoff,
            deliveries_waiting,
            metrics,
        }
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
        self.capacity.open();
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<AttemptRecord>();
        let mut held = Held::default();
        let mut unrecorded: Vec<AttemptRecord> = Vec::new();
        // When the oldest of `unrecorded` finished.
        let mut unrecorded_since: Option<Instant> = None;
        let mut trip: Option<tokio::task::JoinHandle<Trip>> = None;
        // After a failed trip, the next waits out its backoff; attempts go on meanwhile.
        let mut no_trip_before: Option<Instant> = None;
        let mut look_again = true;
        // A trip is needed now rather than at the next spacing: see TRIP_SPACING.
        let mut urgent = true;
        // The last claim left due deliveries behind: a freed slot has something to claim. Without
        // it, a finished attempt claims nothing and waits up to RECORD_DELAY to be recorded with
        // others (fresh deliveries come through the handoff), so a quiet outbox costs a few write
        // transactions a second, not one per delivery.
        let mut backlog = true;
        let mut last_trip_at: Option<Instant> = None;
        let mut wait = MAX_IDLE;
        let mut stopping_since: Option<Instant> = None;
        let mut next_ready_wait_check = Instant::now() + READY_WAIT_CHECK;
        // Ready deliveries that waited too long, for the next trip to hand back to the outbox.
        let mut to_release: Vec<ClaimedDelivery> = Vec::new();
        let mut pace = HookPace::default();
        let mut failures = 0u32;
        let per_hook_limit = self.settings.max_in_flight_per_hook;
        let max_in_flight = self.settings.max_in_flight;
        let stop_deadline = self.settings.timeout + Duration::from_secs(1);
        let start = |delivery: ClaimedDelivery| {
            let sender = self.sender.clone();
            let done = done_tx.clone();
            tokio::spawn(async move {
                let record = sender.attempt(delivery).await;
                let _ = done.send(record);
            });
        };
        // Starts what has a free slot; what waited too long for one goes to `to_release` instead.
        // Returns whether any did (its room is free again: worth a claim).
        let start_ready = |held: &mut Held, to_release: &mut Vec<ClaimedDelivery>| -> bool {
            let start_by = must_start_by(&self.settings, now_ms());
            let (startable, too_late) =
                held.take_startable(per_hook_limit, max_in_flight, start_by);
            startable.into_iter().for_each(&start);
            hand_back(&self.capacity, &self.metrics, too_late, to_release)
        };
        loop {
            if *shutdown.borrow() && stopping_since.is_none() {
                stopping_since = Some(Instant::now());
                // The tracker leases nothing more to a stopping worker.
                self.capacity.close();
                self.release(held.take_ready(None)).await;
            }
            // Ready deliveries that no slot of their hook reached within a time-out (it turned
            // slow) go back to the outbox before their leases could end.
            if stopping_since.is_none() && Instant::now() >= next_ready_wait_check {
                next_ready_wait_check = Instant::now() + READY_WAIT_CHECK;
                let overdue =
                    held.take_leased_until_before(must_start_by(&self.settings, now_ms()));
                look_again |= hand_back(&self.capacity, &self.metrics, overdue, &mut to_release);
                for hook in pace.forget_idle(|hook| self.capacity.held(Some(hook)) == 0) {
                    self.capacity.reset_room(&hook);
                }
            }
            let backing_off = no_trip_before.is_some_and(|t| Instant::now() < t);
            // Not now, but at the next spacing.
            let mut paced_until = None;
            if trip.is_none() {
                let past_deadline = stopping_since.is_some_and(|t| t.elapsed() > stop_deadline);
                let claim = stopping_since.is_none() && look_again && self.capacity.free() > 0;
                // Stopping: done once nothing is in flight and everything is recorded, or at the
                // deadline whatever is left (its leases bring it back).
                let all_done =
                    held.total_in_flight == 0 && unrecorded.is_empty() && to_release.is_empty();
                if stopping_since.is_some() && (all_done || past_deadline) {
                    if !unrecorded.is_empty() {
                        tracing::warn!(
                            attempts = unrecorded.len(),
                            "stopping without recording these attempts; their deliveries go out again when their leases end"
                        );
                    }
                    break;
                }
                // Free slots, nothing ready to fill them, and due deliveries left to claim.
                let idle = backlog && held.total_ready == 0 && held.total_in_flight < max_in_flight;
                // A claim goes at the next spacing; records alone wait until enough of them
                // waited, or long enough.
                let not_before = if claim {
                    last_trip_at.map(|t| t + TRIP_SPACING)
                } else {
                    unrecorded_since.map(|t| t + RECORD_DELAY)
                };
                let due_now = urgent
                    || idle
                    || stopping_since.is_some()
                    || unrecorded.len() >= RECORD_BATCH
                    || not_before.is_none_or(|t| Instant::now() >= t);
                if !backing_off && (claim || !unrecorded.is_empty() || !to_release.is_empty()) {
                    if due_now {
                        let limit = if claim { CLAIM_BATCH } else { 0 };
                        trip = Some(self.start_trip(
                            std::mem::take(&mut unrecorded),
                            std::mem::take(&mut to_release),
                            limit,
                            &held,
                        ));
                        unrecorded_since = None;
                        look_again = false;
                        urgent = false;
                        last_trip_at = Some(Instant::now());
                    } else {
                        paced_until = not_before;
                    }
                }
            }
            let mut nap = match (no_trip_before, paced_until) {
                (Some(t), _) if backing_off => t.saturating_duration_since(Instant::now()),
                (_, Some(t)) => t.saturating_duration_since(Instant::now()).min(wait),
                _ => wait,
            };
            // Woken for the ready queue's check alone, the loop's top does it; nothing else is due.
            let mut nap_is_the_check = false;
            if held.total_ready > 0 && stopping_since.is_none() {
                let until_check = next_ready_wait_check.saturating_duration_since(Instant::now());
                if until_check < nap {
                    nap = until_check;
                    nap_is_the_check = true;
                }
            }
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
                            self.capacity.set_room(&record.hook_id, per_hook_limit * (1 + rounds));
                        }
                    }
                    if stopping_since.is_none() {
                        look_again |= start_ready(&mut held, &mut to_release);
                    }
                    // A hook whose slot freed with nothing ready for it waits for the next claim.
                    urgent |= backlog && finished.iter().any(|r| !held.ready.contains_key(&r.hook_id));
                    unrecorded_since.get_or_insert_with(Instant::now);
                    unrecorded.extend(finished);
                    // A slot freed: the next trip claims for it, if anything waits.
                    look_again |= backlog;
                }
                Some(leased) = self.handed_over.recv() => {
                    if stopping_since.is_some() {
                        self.release(leased).await;
                        continue;
                    }
                    for delivery in leased {
                        self.hold(&mut held, delivery);
                    }
                    look_again |= start_ready(&mut held, &mut to_release);
                }
                joined = async { trip.as_mut().expect("polled only with a trip").await }, if trip.is_some() => {
                    trip = None;
                    let (records, released, result) = joined.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
                    match result {
                        Ok(TripResult { claim: ClaimOutcome { deliveries: claimed, next_due, due_without_room }, health, stopped_hooks }) => {
                            failures = 0;
                            no_trip_before = None;
                            self.finished(&records, &health);
                            if stopping_since.is_some() {
                                // Claimed while the stop came: hand them straight back.
                                self.release(claimed).await;
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
                            let mut handed_back = Vec::new();
                            for hook in disabled_here.chain(gone).chain(&stopped_hooks) {
                                handed_back.extend(held.take_ready(Some(hook)));
                            }
                            self.release(handed_back).await;
                            look_again |= start_ready(&mut held, &mut to_release);
                            let now = now_ms();
                            // The claim came back full, or left due deliveries behind with room to
                            // take them: claim again at once. Due deliveries of hooks without room
                            // wait for a slot of theirs to free (`backlog`).
                            let due_now = next_due.is_some_and(|at| at <= now);
                            backlog = due_without_room || due_now;
                            match next_due {
                                _ if due_now => look_again = true,
                                Some(at) => wait = Duration::from_millis((at - now) as u64).min(MAX_IDLE),
                                None => wait = MAX_IDLE,
                            }
                        }
                        Err(e) => {
                            failures += 1;
                            tracing::warn!("cannot record {} attempts or claim deliveries yet: {e}", records.len());
                            if !records.is_empty() {
                                unrecorded_since = Some(Instant::now());
                            }
                            unrecorded.splice(0..0, records);
                            to_release.splice(0..0, released);
                            no_trip_before = Some(Instant::now() + backoff(failures));
                            look_again = true;
                        }
                    }
                }
                _ = self.deliveries_waiting.notified(), if stopping_since.is_none() => {
                    look_again = true;
                    urgent = true;
                }
                _ = shutdown.changed(), if stopping_since.is_none() => {}
                _ = tokio::time::sleep(nap), if trip.is_none() => {
                    if !backing_off && !nap_is_the_check {
                        look_again = true;
                        // Woken for a due delivery rather than by the spacing.
                        urgent |= paced_until.is_none();
                        wait = MAX_IDLE;
                    }
                }
            }
        }
        alive.store(false, Ordering::SeqCst);
    }

    /// Records `records`, hands `released` back and claims up to `limit` deliveries in one
    /// transaction, on a blocking thread, while the loop goes on starting attempts; the claim also
    /// says when to look again.
    fn start_trip(
        &self,
        records: Vec<AttemptRecord>,
        released: Vec<ClaimedDelivery>,
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
                .record_and_claim(&records, &released, &policy, &claim)
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
            (records, released, result)
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
    async fn release(&self, claims: Vec<ClaimedDelivery>) {
        if claims.is_empty() {
            return;
        }
        for claim in &claims {
            self.capacity.give_back(&claim.hook_id);
        }
        let store = self.store.clone();
        let count = claims.len();
        let released = tokio::task::spawn_blocking(move || {
            store.release_claims(&claims.iter().collect::<Vec<_>>(), now_ms())
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        if let Err(e) = released {
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
                next = ?record.next,
                "attempt finished"
            );
        }
    }
}

/// Ready deliveries that waited too long for a slot: their room goes back to the capacity and they
/// go to `to_release`, for the next trip to hand back to the outbox. Returns whether there were any.
fn hand_back(
    capacity: &Capacity,
    metrics: &Metrics,
    overdue: Vec<ClaimedDelivery>,
    to_release: &mut Vec<ClaimedDelivery>,
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
    to_release.extend(overdue);
    true
}

/// How long each hook's attempts take lately, and so how many rounds of them the worker claims
/// ahead: a ready delivery must start within a time-out (`READY_WAIT_TIMEOUTS`), and one `n` rounds
/// back waits about `n` attempts' time. A hook that answers in a millisecond gets `ROUNDS_AHEAD`,
/// one whose attempts run to the time-out one round; a hook not timed yet `FIRST_ROUNDS_AHEAD`.
#[derive(Default)]
struct HookPace {
    hooks: HashMap<String, Pace>,
}

struct Pace {
    /// A moving average of the hook's attempts' durations.
    average_ms: f64,
    rounds_ahead: usize,
}

impl HookPace {
    /// Notes how long an attempt took; returns the hook's rounds ahead when they change.
    fn attempt_took(&mut self, hook: &str, duration_ms: i64, timeout: Duration) -> Option<usize> {
        let took = duration_ms.max(0) as f64;
        let Some(pace) = self.hooks.get_mut(hook) else {
            let rounds_ahead = rounds_ahead_at(took, timeout);
            self.hooks.insert(
                hook.to_owned(),
                Pace {
                    average_ms: took,
                    rounds_ahead,
                },
            );
            return Some(rounds_ahead);
        };
        pace.average_ms += (took - pace.average_ms) / 8.0;
        let rounds_ahead = rounds_ahead_at(pace.average_ms, timeout);
        if rounds_ahead == pace.rounds_ahead {
            return None;
        }
        pace.rounds_ahead = rounds_ahead;
        Some(rounds_ahead)
    }

    /// Forgets the hooks for which `holds_nothing` is true, and returns them: they are timed
    /// afresh when they next send. Subscriptions come and go, so the worker must not keep every
    /// hook it ever sent to.
    fn forget_idle(&mut self, holds_nothing: impl Fn(&str) -> bool) -> Vec<String> {
        let idle: Vec<String> = self
            .hooks
            .keys()
            .filter(|hook| holds_nothing(hook))
            .cloned()
            .collect();
        for hook in &idle {
            self.hooks.remove(hook);
        }
        idle
    }
}

/// Rounds ahead for attempts that take `average_ms`: the last of them should start within half a
/// time-out, the other half being room for the average to be wrong.
fn rounds_ahead_at(average_ms: f64, timeout: Duration) -> usize {
    let half_timeout_ms = timeout.as_secs_f64() * 1000.0 / 2.0;
    ((half_timeout_ms / average_ms.max(1.0)) as usize).clamp(1, ROUNDS_AHEAD)
}

/// How long a leased delivery stays leased: long enough to wait in the ready queue (at most
/// `READY_WAIT_TIMEOUTS` time-outs, then it goes back), run its attempt and be recorded. A process
/// that dies mid-attempt leaves its leases to run out; then the deliveries are sent again, which is
/// what at least once costs.
fn lease_ms(settings: &DeliverySettings) -> i64 {
    (settings.timeout * (1 + READY_WAIT_TIMEOUTS) + LEASE_MARGIN).as_millis() as i64
}

/// A ready delivery whose lease ends before this (Unix ms) can no longer be sent and recorded in
/// time: one attempt and the margin to record it are all that is left.
fn must_start_by(settings: &DeliverySettings, now: i64) -> i64 {
    now + (settings.timeout + LEASE_MARGIN).as_millis() as i64
}

fn backoff(failures: u32) -> Duration {
    Duration::from_millis(50u64 << failures.min(7)).min(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claimed(seq: i64, hook: &str) -> ClaimedDelivery {
        ClaimedDelivery {
            seq,
            message_id: format!("msg_{seq}"),
            attempt: 1,
            hook_id: hook.into(),
            target_url: "http://127.0.0.1:9/".into(),
            secret: "whsec_c2VjcmV0".into(),
            previous_secret: None,
            authorization: None,
            event_id: format!("evt_{seq}"),
            trigger: "NewOpportunity".into(),
            payload: "{}".into(),
            leased_until: 0,
        }
    }

    fn ended(delivery: &ClaimedDelivery) -> AttemptRecord {
        AttemptRecord::delivered(delivery, 0)
    }

    fn seqs(deliveries: &[ClaimedDelivery]) -> Vec<i64> {
        deliveries.iter().map(|d| d.seq).collect()
    }

    #[test]
    fn ready_deliveries_start_in_claim_order_within_both_limits() {
        let mut held = Held::default();
        for seq in 1..=4 {
            assert!(held.add_ready(claimed(seq, "hook_a")));
        }
        assert!(held.add_ready(claimed(5, "hook_b")));
        assert!(held.add_ready(claimed(6, "hook_a")));
        assert!(!held.add_ready(claimed(5, "hook_b")), "never held twice");
        // Two per hook, three in all: hook_a's two oldest, then hook_b's.
        let started = held.take_startable(2, 3, 0).0;
        assert_eq!(seqs(&started), [1, 2, 5]);
        assert_eq!((held.total_in_flight, held.total_ready), (3, 3));
        assert!(held.take_startable(2, 3, 0).0.is_empty(), "no slot is free");
        // hook_b's attempt ends: the worker's free slot goes to the oldest claim that may start,
        // hook_a's, but hook_a is at its own limit.
        held.attempt_ended(&ended(&started[2]));
        assert!(held.take_startable(2, 3, 0).0.is_empty());
        held.attempt_ended(&ended(&started[0]));
        assert_eq!(seqs(&held.take_startable(2, 3, 0).0), [3]);
        assert!(
            held.add_ready(claimed(5, "hook_b")),
            "ended, so it may be claimed again"
        );
        assert_eq!(seqs(&held.take_ready(Some("hook_b"))), [5]);
        assert_eq!(seqs(&held.take_ready(None)), [4, 6]);
        assert_eq!(held.total_ready, 0);
    }

    #[test]
    fn deliveries_whose_lease_ends_too_soon_leave_the_ready_queue() {
        let mut held = Held::default();
        let leased = |seq: i64, hook: &str, until: i64| ClaimedDelivery {
            leased_until: until,
            ..claimed(seq, hook)
        };
        held.add_ready(leased(1, "hook_a", 100));
        held.add_ready(leased(2, "hook_a", 300));
        held.add_ready(leased(3, "hook_b", 150));
        held.add_ready(leased(4, "hook_b", 400));
        held.add_ready(leased(5, "hook_c", 120));
        let started = held.take_startable(1, 1, 0).0;
        assert_eq!(
            seqs(&started),
            [1],
            "in flight: not the queue's to hand back"
        );
        let mut overdue = seqs(&held.take_leased_until_before(200));
        overdue.sort();
        assert_eq!(overdue, [3, 5]);
        assert_eq!(held.total_ready, 2);
        assert!(!held.ready.contains_key("hook_c"), "an emptied queue goes");
        assert!(held.add_ready(leased(3, "hook_b", 900)), "claimable again");
        held.attempt_ended(&ended(&started[0]));
        assert_eq!(
            seqs(&held.take_startable(2, 3, 0).0),
            [2, 4, 3],
            "claim order kept"
        );
        assert!(held.take_leased_until_before(i64::MAX).is_empty());
    }

    #[test]
    fn a_delivery_that_reaches_a_slot_too_late_is_not_started() {
        let mut held = Held::default();
        let leased = |seq: i64, until: i64| ClaimedDelivery {
            leased_until: until,
            ..claimed(seq, "hook_a")
        };
        held.add_ready(leased(1, 500));
        held.add_ready(leased(2, 100));
        held.add_ready(leased(3, 600));
        let (started, too_late) = held.take_startable(2, 10, 200);
        assert_eq!(seqs(&started), [1, 3], "the one behind takes the slot");
        assert_eq!(seqs(&too_late), [2]);
        assert_eq!((held.total_ready, held.total_in_flight), (0, 2));
        assert!(held.add_ready(leased(2, 900)), "no longer held");
    }

    #[test]
    fn a_hooks_rounds_ahead_follow_how_long_its_attempts_take() {
        let timeout = Duration::from_secs(15);
        assert_eq!(rounds_ahead_at(0.0, timeout), ROUNDS_AHEAD);
        assert_eq!(rounds_ahead_at(900.0, timeout), ROUNDS_AHEAD);
        assert_eq!(rounds_ahead_at(1_500.0, timeout), 5);
        assert_eq!(rounds_ahead_at(15_000.0, timeout), 1, "at least one");
        let mut pace = HookPace::default();
        assert_eq!(pace.attempt_took("a", 2, timeout), Some(ROUNDS_AHEAD));
        assert_eq!(pace.attempt_took("a", 3, timeout), None, "unchanged");
        // A fast hook turning slow loses its depth within a few attempts, not at the first.
        let mut rounds = Vec::new();
        for _ in 0..20 {
            rounds.extend(pace.attempt_took("a", 15_000, timeout));
        }
        assert!(rounds[0] > 1, "{rounds:?}");
        assert_eq!(rounds.last(), Some(&1));
        assert!(rounds.windows(2).all(|w| w[0] > w[1]), "{rounds:?}");
        assert_eq!(
            pace.attempt_took("b", 15_000, timeout),
            Some(1),
            "hooks apart"
        );
        assert_eq!(pace.forget_idle(|hook| hook == "a"), ["a"]);
        assert_eq!(
            pace.attempt_took("a", 2, timeout),
            Some(ROUNDS_AHEAD),
            "timed afresh"
        );
    }

    #[test]
    fn the_authorization_header_is_masked_in_the_log() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            HeaderValue::from_static("Basic c3a24b8208ac"),
        );
        headers.insert("webhook-id", HeaderValue::from_static("msg_1"));
        headers.append("vary", HeaderValue::from_static("origin"));
        headers.append("vary", HeaderValue::from_static("accept \"x\""));
        let logged: serde_json::Value =
            serde_json::from_str(&masked_headers_json(&headers)).unwrap();
        assert_eq!(logged["authorization"], "Basic ********");
        assert_eq!(logged["webhook-id"], "msg_1");
        assert_eq!(logged["vary"], "origin, accept \"x\"");
        let unmasked: serde_json::Value = serde_json::from_str(&headers_json(&headers)).unwrap();
        assert_eq!(unmasked["authorization"], "Basic c3a24b8208ac");
    }
}
