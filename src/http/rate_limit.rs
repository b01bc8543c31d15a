//! Requests per token: a bucket per token (governor's GCRA), so that one integration stuck in a loop
//! cannot take the API, or the database behind it, from the others. The admin pages' session counts
//! as one more caller.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::RateLimit;

pub struct RateLimits {
    limiter: Option<DefaultKeyedRateLimiter<String>>,
    clock: DefaultClock,
}

impl RateLimits {
    /// `None`: no limit.
    pub fn new(limit: Option<RateLimit>) -> RateLimits {
        let limiter = limit.and_then(|limit| {
            let per_second = NonZeroU32::new(limit.per_second)?;
            let burst = NonZeroU32::new(limit.burst).unwrap_or(per_second);
            Some(RateLimiter::keyed(
                Quota::per_second(per_second).allow_burst(burst),
            ))
        });
        RateLimits {
            limiter,
            clock: DefaultClock::default(),
        }
    }

    /// Counts one request of `caller`; `Err` with how long to wait when it is over its rate.
    pub fn check(&self, caller: &str) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        // Callers are the configured tokens and the pages' session: a handful of keys, never
        // pruned, so the map stays as small as the token list.
        let caller = caller.to_owned();
        limiter
            .check_key(&caller)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_over_its_burst_waits_and_others_are_not_affected() {
        let limits = RateLimits::new(Some(RateLimit {
            per_second: 1,
            burst: 3,
        }));
        for _ in 0..3 {
            assert!(limits.check("zapier").is_ok());
        }
        let wait = limits.check("zapier").unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(limits.check("crm").is_ok());
    }

    #[test]
    fn no_limit_lets_everything_through() {
        let limits = RateLimits::new(None);
        for _ in 0..10_000 {
            assert!(limits.check("default").is_ok());
        }
    }
}
