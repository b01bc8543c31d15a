//! When to try again: the configured schedule with ±20 % jitter, or the target's `Retry-After` on 429
//! and 503, within bounds.

use std::time::Duration;

use rand::Rng;

use crate::store::NextStep;

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Delay before attempt 2, 3, ...; after the last one the delivery fails.
    pub schedule: Vec<Duration>,
    pub max_retry_after: Duration,
}

/// How an attempt ended, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    Success,
    Gone,
    /// A failure; `retry_after` when the target said how long to wait (429 or 503 only).
    Failure {
        retry_after: Option<Duration>,
    },
}

impl RetryPolicy {
    /// What follows attempt number `attempt` (1-based) that ended at `now_ms`.
    pub fn next_step(&self, attempt: u32, result: AttemptResult, now_ms: i64) -> NextStep {
        match result {
            AttemptResult::Success => NextStep::Delivered,
            AttemptResult::Gone => NextStep::HookGone,
            AttemptResult::Failure { retry_after } => {
                let Some(scheduled) = self.schedule.get(attempt as usize - 1) else {
                    return NextStep::Failed;
                };
                let delay = match retry_after {
                    Some(asked) => asked.min(self.max_retry_after),
                    None => jitter(*scheduled),
                };
                NextStep::RetryAt(now_ms + delay.as_millis() as i64)
            }
        }
    }
}

/// ±20 %, so that deliveries that failed together do not all come back at the same instant.
fn jitter(delay: Duration) -> Duration {
    let factor = rand::rng().random_range(0.8..=1.2);
    delay.mul_f64(factor)
}

/// `Retry-After` as seconds or as an HTTP date.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            schedule: vec![Duration::from_secs(5), Duration::from_secs(300)],
            max_retry_after: Duration::from_secs(60),
        }
    }

    #[test]
    fn failures_follow_the_schedule_with_jitter_then_fail() {
        let failure = AttemptResult::Failure { retry_after: None };
        for _ in 0..50 {
            let NextStep::RetryAt(at) = policy().next_step(1, failure, 0) else {
                panic!("expected a retry");
            };
            assert!((4_000..=6_000).contains(&at), "{at}");
        }
        let NextStep::RetryAt(at) = policy().next_step(2, failure, 1_000) else {
            panic!("expected a retry");
        };
        assert!((241_000..=361_000).contains(&at), "{at}");
        assert_eq!(policy().next_step(3, failure, 0), NextStep::Failed);
    }

    #[test]
    fn retry_after_is_honoured_within_bounds() {
        let asked = |secs| AttemptResult::Failure {
            retry_after: Some(Duration::from_secs(secs)),
        };
        assert_eq!(policy().next_step(1, asked(7), 0), NextStep::RetryAt(7_000));
        assert_eq!(
            policy().next_step(1, asked(3600), 0),
            NextStep::RetryAt(60_000)
        );
        assert_eq!(policy().next_step(2, asked(7), 0), NextStep::RetryAt(7_000));
        assert_eq!(policy().next_step(3, asked(7), 0), NextStep::Failed);
    }

    #[test]
    fn success_and_gone_end_the_delivery() {
        assert_eq!(
            policy().next_step(1, AttemptResult::Success, 0),
            NextStep::Delivered
        );
        assert_eq!(
            policy().next_step(9, AttemptResult::Gone, 0),
            NextStep::HookGone
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
