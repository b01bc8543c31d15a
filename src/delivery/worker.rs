//! The delivery worker.
//!
//! One loop claims due deliveries in batches and starts one task per attempt; finished attempts come
//! back over a channel and are recorded in batches. A hook has at most
//! `max_in_flight_per_hook` attempts in flight, so a slow or dead target holds only its own slots and
//! never the healthy targets' ones.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::sync::{mpsc, watch, Notify};

use super::retry::{parse_retry_after, AttemptResult, RetryPolicy};
use super::signing::sign;
use super::target::{GuardedResolver, TargetError, TargetPolicy};
use super::{RESPONSE_BODY_CAP, USER_AGENT};
use crate::clock::now_ms;
use crate::config::DeliverySettings;
use crate::metrics::Metrics;
use crate::store::{
    AttemptOutcome, AttemptRecord, Claim, ClaimedDelivery, FailurePolicy, HookHealthChange, Store,
    StoreError,
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

    pub async fn attempt(&self, delivery: &ClaimedDelivery) -> AttemptRecord {
        let started_at = now_ms();
        let clock = Instant::now();
        let timestamp = started_at / 1000;
        let mut record = AttemptRecord {
            delivery_seq: delivery.seq,
            url: delivery.target_url.clone(),
            hook_id: delivery.hook_id.clone(),
            event_id: delivery.event_id.clone(),
            message_id: delivery.message_id.clone(),
            attempt: delivery.attempt,
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
        let result = match self.prepare(delivery, timestamp) {
            Err((outcome, error)) => {
                record.outcome = outcome;
                record.error = Some(error);
                AttemptResult::Failure { retry_after: None }
            }
            Ok(headers) => {
                record.request_headers = masked_headers_json(&headers);
                self.send(delivery, headers, &mut record).await
            }
        };
        record.duration_ms = clock.elapsed().as_millis() as i64;
        record.next = self.retry.next_step(delivery.attempt, result, now_ms());
        record
    }

    /// The request's headers, or why it cannot be sent at all.
    fn prepare(
        &self,
        delivery: &ClaimedDelivery,
        timestamp: i64,
    ) -> Result<HeaderMap, (AttemptOutcome, String)> {
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
        Ok(headers)
    }

    async fn send(
        &self,
        delivery: &ClaimedDelivery,
        headers: HeaderMap,
        record: &mut AttemptRecord,
    ) -> AttemptResult {
        let sent = self
            .client
            .post(&delivery.target_url)
            .headers(headers)
            .body(delivery.payload.clone())
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

fn headers_json(headers: &HeaderMap) -> String {
    let mut map = serde_json::Map::new();
    for name in headers.keys() {
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        map.insert(name.as_str().to_owned(), values.join(", ").into());
    }
    serde_json::Value::Object(map).to_string()
}

/// The request headers as logged: the authorization header keeps its scheme and loses its secret.
fn masked_headers_json(headers: &HeaderMap) -> String {
    let mut masked = headers.clone();
    if let Some(value) = masked.get_mut(reqwest::header::AUTHORIZATION) {
        let shown = super::mask_authorization(&String::from_utf8_lossy(value.as_bytes()));
        *value = HeaderValue::from_str(&shown).unwrap_or(HeaderValue::from_static("********"));
    }
    headers_json(&masked)
}

/// The loop that keeps deliveries moving.
pub struct Worker {
    store: Store,
    sender: Sender,
    settings: DeliverySettings,
    /// Notified when new deliveries are stored, so they go out at once rather than at the next look.
    deliveries_waiting: Arc<Notify>,
    metrics: Arc<Metrics>,
}

/// Time beyond the attempt's time-out for recording it before its lease runs out.
const LEASE_MARGIN: Duration = Duration::from_secs(10);
/// Claims per look; more are claimed at once when the batch came back full.
const CLAIM_BATCH: usize = 100;
/// The longest the worker sleeps without looking, in case a delivery was stored by another process.
const MAX_IDLE: Duration = Duration::from_secs(1);

impl Worker {
    pub fn new(
        store: Store,
        settings: DeliverySettings,
        deliveries_waiting: Arc<Notify>,
        metrics: Arc<Metrics>,
    ) -> Worker {
        Worker {
            sender: Sender::new(&settings),
            store,
            settings,
            deliveries_waiting,
            metrics,
        }
    }

    /// How long a claimed delivery stays leased: the attempt's time-out and a margin to record it.
    /// A process that dies mid-attempt leaves its leases to run out; then the deliveries are sent
    /// again, which is what at least once costs.
    fn lease_ms(&self) -> i64 {
        (self.settings.timeout + LEASE_MARGIN).as_millis() as i64
    }

    /// Runs until `shutdown` turns true; then lets attempts in flight finish within the delivery
    /// time-out, records them, and returns. An attempt cut off there stays leased and is retried
    /// after the lease, by this process or the next.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>, alive: Arc<AtomicBool>) {
        alive.store(true, Ordering::SeqCst);
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<AttemptRecord>();
        let mut in_flight: HashMap<String, usize> = HashMap::new();
        let mut total_in_flight = 0usize;
        let mut unrecorded: Vec<AttemptRecord> = Vec::new();
        let mut stopping_since: Option<Instant> = None;
        let mut failures = 0u32;
        loop {
            if *shutdown.borrow() && stopping_since.is_none() {
                stopping_since = Some(Instant::now());
            }
            let mut wait = MAX_IDLE;
            let room = self.settings.max_in_flight.saturating_sub(total_in_flight);
            if (stopping_since.is_some() || room == 0) && !unrecorded.is_empty() {
                self.record(&mut unrecorded).await;
            }
            if stopping_since.is_none() {
                if room > 0 {
                    // Finished attempts are recorded in the transaction that claims the next ones.
                    match self
                        .record_and_claim(&mut unrecorded, room.min(CLAIM_BATCH), &in_flight)
                        .await
                    {
                        Ok(claimed) => {
                            failures = 0;
                            let full = claimed.len() == room.min(CLAIM_BATCH);
                            for delivery in claimed {
                                *in_flight.entry(delivery.hook_id.clone()).or_default() += 1;
                                total_in_flight += 1;
                                let sender = self.sender.clone();
                                let done = done_tx.clone();
                                tokio::spawn(async move {
                                    let record = sender.attempt(&delivery).await;
                                    let _ = done.send(record);
                                });
                            }
                            wait = if full {
                                Duration::ZERO
                            } else {
                                self.until_next_due(&in_flight).await
                            };
                        }
                        Err(e) => {
                            failures += 1;
                            tracing::warn!("cannot claim deliveries: {e}");
                            wait = backoff(failures);
                        }
                    }
                }
            } else if total_in_flight == 0
                || stopping_since
                    .is_some_and(|t| t.elapsed() > self.settings.timeout + Duration::from_secs(1))
            {
                if !unrecorded.is_empty() {
                    self.record(&mut unrecorded).await;
                }
                break;
            }

            tokio::select! {
                biased;
                Some(record) = done_rx.recv() => {
                    let mut finished = vec![record];
                    while let Ok(record) = done_rx.try_recv() {
                        finished.push(record);
                    }
                    for record in &finished {
                        if let Some(n) = in_flight.get_mut(&record.hook_id) {
                            *n -= 1;
                            if *n == 0 {
                                in_flight.remove(&record.hook_id);
                            }
                        }
                    }
                    total_in_flight -= finished.len().min(total_in_flight);
                    unrecorded.extend(finished);
                }
                _ = self.deliveries_waiting.notified(), if stopping_since.is_none() => {}
                _ = shutdown.changed(), if stopping_since.is_none() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        alive.store(false, Ordering::SeqCst);
    }

    /// Records `records` and claims up to `limit` deliveries in one transaction. On failure the
    /// records stay in `records` for the next try, so no outcome is lost.
    async fn record_and_claim(
        &self,
        records: &mut Vec<AttemptRecord>,
        limit: usize,
        in_flight: &HashMap<String, usize>,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let batch = std::mem::take(records);
        let store = self.store.clone();
        let in_flight = in_flight.clone();
        let per_hook_limit = self.settings.max_in_flight_per_hook;
        let lease_ms = self.lease_ms();
        let policy = self.failure_policy();
        let (batch, result) = blocking(move || {
            let claim = Claim {
                now: now_ms(),
                lease_ms,
                limit,
                in_flight: &in_flight,
                per_hook_limit,
            };
            let result = store.record_and_claim(&batch, &policy, &claim);
            Ok((batch, result))
        })
        .await?;
        match result {
            Ok((claimed, health)) => {
                self.finished(&batch, &health);
                Ok(claimed)
            }
            Err(e) => {
                *records = batch;
                Err(e)
            }
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

    async fn until_next_due(&self, in_flight: &HashMap<String, usize>) -> Duration {
        let store = self.store.clone();
        let in_flight = in_flight.clone();
        let per_hook = self.settings.max_in_flight_per_hook;
        match blocking(move || store.next_due(&in_flight, per_hook)).await {
            Ok(Some(at)) => Duration::from_millis((at - now_ms()).max(0) as u64).min(MAX_IDLE),
            Ok(None) => MAX_IDLE,
            Err(e) => {
                tracing::warn!("cannot read the next due delivery: {e}");
                MAX_IDLE
            }
        }
    }

    /// Records finished attempts; on failure keeps them for the next try, so no outcome is lost.
    async fn record(&self, records: &mut Vec<AttemptRecord>) {
        let batch = std::mem::take(records);
        let store = self.store.clone();
        let policy = self.failure_policy();
        let (batch, result) = blocking(move || {
            let result = store.record_attempts(&batch, &policy);
            Ok((batch, result))
        })
        .await
        .expect("the closure does not fail");
        match result {
            Ok(health) => self.finished(&batch, &health),
            Err(e) => {
                tracing::warn!("cannot record {} attempts yet: {e}", batch.len());
                *records = batch;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
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

fn backoff(failures: u32) -> Duration {
    Duration::from_millis(50u64 << failures.min(7)).min(Duration::from_secs(5))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_authorization_header_is_masked_in_the_log() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            HeaderValue::from_static("Basic c3a24b8208ac"),
        );
        headers.insert("webhook-id", HeaderValue::from_static("msg_1"));
        let logged: serde_json::Value =
            serde_json::from_str(&masked_headers_json(&headers)).unwrap();
        assert_eq!(logged["authorization"], "Basic ********");
        assert_eq!(logged["webhook-id"], "msg_1");
    }
}
