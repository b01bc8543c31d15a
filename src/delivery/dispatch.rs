//! One attempt: sign the delivery, POST it with the hook's headers, and turn what came back (or
//! did not) into the attempt's record and its delivery's next step.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::retry::{parse_retry_after, AttemptResult, RetryPolicy};
use super::signing::sign;
use super::target::{GuardedResolver, TargetError, TargetPolicy};
use super::{RESPONSE_BODY_CAP, USER_AGENT};
use crate::clock::now_ms;
use crate::config::DeliverySettings;
use crate::store::{AttemptOutcome, AttemptRecord, ClaimedDelivery};

/// Signs and POSTs one attempt and says what it came to.
#[derive(Clone)]
pub struct Dispatcher {
    client: reqwest::Client,
    policy: Arc<TargetPolicy>,
    retry: RetryPolicy,
}

impl Dispatcher {
    pub fn new(settings: &DeliverySettings) -> Dispatcher {
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
        Dispatcher {
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
            leased_until,
            ..
        } = delivery;
        let mut record = AttemptRecord {
            delivery_seq: seq,
            leased_until,
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
