//! Requests per token: a bucket per token (governor's GCRA), so that one integration stuck in a loop
//! cannot take the API, or the database behind it, from the others. The admin pages' session counts
//! as one more caller.
//!
//! Failed sign-ins (a wrong token, on the API or the sign-in form) are counted per client address
//! in the database (`SignIns`), so that guessing a token costs minutes per handful of tries
//! however many nodes the guesser spreads them over. A node remembers the blocks it has seen, so
//! that a blocked guesser's flood costs it no query.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;

use super::{blocking, ApiError};
use crate::config::RateLimit;
use crate::store::{SignInAllowance, Store};

pub struct RateLimits {
    limiter: Option<DefaultKeyedRateLimiter<String>>,
    /// Addresses this node saw blocked, until when (the database knows them all). While blocked,
    /// no token is even checked, so that a guesser learns nothing, right guesses included.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    trusted_proxies: Vec<IpNet>,
    clock: DefaultClock,
}

/// Failed sign-ins allowed from one address at once, then one more every 6 seconds.
const FAILED_SIGN_INS: SignInAllowance = SignInAllowance {
    every_ms: 6_000,
    burst: 10,
};

impl RateLimits {
    /// `None`: no limit.
    pub fn new(limit: Option<RateLimit>, trusted_proxies: Vec<IpNet>) -> RateLimits {
        let limiter = limit.and_then(|limit| {
            let per_second = NonZeroU32::new(limit.per_second)?;
            let burst = NonZeroU32::new(limit.burst).unwrap_or(per_second);
            Some(RateLimiter::keyed(
                Quota::per_second(per_second).allow_burst(burst),
            ))
        });
        RateLimits {
            limiter,
            blocked: Mutex::default(),
            trusted_proxies,
            clock: DefaultClock::default(),
        }
    }

    /// The client's address: the TCP peer, or, when the peer is a trusted proxy, the nearest
    /// address in `X-Forwarded-For` that is not one (each proxy appends the address it saw, so
    /// only the right end of the list can be believed).
    pub fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let trusted = |ip: &IpAddr| self.trusted_proxies.iter().any(|net| net.contains(ip));
        if !trusted(&peer) {
            return peer;
        }
        let forwarded: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|part| part.trim().parse().ok())
            .collect();
        forwarded
            .into_iter()
            .rev()
            .find(|ip| !trusted(ip))
            .unwrap_or(peer)
    }

    /// How long `address` must still wait after too many failed sign-ins on any node; `None`: it
    /// may try.
    pub async fn sign_in_blocked(
        &self,
        store: &Store,
        address: IpAddr,
    ) -> Result<Option<Duration>, ApiError> {
        if let Some(wait) = self.blocked_here(address) {
            return Ok(Some(wait));
        }
        let store = store.clone();
        let now = crate::clock::now_ms();
        let until =
            blocking(move || Ok(store.sign_in_blocked_until(&address.to_string(), now)?)).await?;
        Ok(until.map(|until| self.remember_blocked(address, until - now)))
    }

    /// Counts one failed sign-in from `address`; past the allowance, the address is blocked for as
    /// long as it takes to earn one more try, and `Err` says how long.
    pub async fn failed_sign_in(
        &self,
        store: &Store,
        address: IpAddr,
    ) -> Result<Result<(), Duration>, ApiError> {
        let store = store.clone();
        let now = crate::clock::now_ms();
        let until = blocking(move || {
            Ok(store.failed_sign_in(&address.to_string(), now, &FAILED_SIGN_INS)?)
        })
        .await?;
        Ok(match until {
            None => Ok(()),
            Some(until) => Err(self.remember_blocked(address, until - now)),
        })
    }

    fn blocked_here(&self, address: IpAddr) -> Option<Duration> {
        let mut blocked = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
        let until = *blocked.get(&address)?;
        let now = Instant::now();
        if until > now {
            Some(until - now)
        } else {
            blocked.remove(&address);
            None
        }
    }

    /// Remembers that `address` is blocked for `wait_ms`; the wait.
    fn remember_blocked(&self, address: IpAddr, wait_ms: i64) -> Duration {
        let wait = Duration::from_millis(wait_ms.max(1) as u64);
        let mut blocked = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        blocked.retain(|_, until| *until > now);
        blocked.insert(address, now + wait);
        wait
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
        let limits = RateLimits::new(
            Some(RateLimit {
                per_second: 1,
                burst: 3,
            }),
            Vec::new(),
        );
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

    #[tokio::test]
    async fn failed_sign_ins_are_counted_per_address_in_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("herald.db")).unwrap();
        let limits = RateLimits::new(None, Vec::new());
        let guesser: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..FAILED_SIGN_INS.burst {
            assert!(limits
                .failed_sign_in(&store, guesser)
                .await
                .unwrap()
                .is_ok());
        }
        assert_eq!(limits.sign_in_blocked(&store, guesser).await.unwrap(), None);
        let wait = limits
            .failed_sign_in(&store, guesser)
            .await
            .unwrap()
            .unwrap_err();
        assert!(
            wait > Duration::from_secs(1) && wait <= Duration::from_secs(6),
            "{wait:?}"
        );
        let left = limits.sign_in_blocked(&store, guesser).await.unwrap();
        assert!(left.expect("blocked") <= wait);
        // Another node (its own memory, the same database) knows it too.
        let other_node = RateLimits::new(None, Vec::new());
        let left = other_node.sign_in_blocked(&store, guesser).await.unwrap();
        assert!(left.expect("blocked on the other node") <= wait);
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        assert_eq!(limits.sign_in_blocked(&store, other).await.unwrap(), None);
        assert!(limits.failed_sign_in(&store, other).await.unwrap().is_ok());
    }

    #[test]
    fn the_client_is_the_peer_unless_a_trusted_proxy_forwarded_it() {
        let limits = RateLimits::new(None, vec!["10.0.0.0/8".parse().unwrap()]);
        let headers = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("x-forwarded-for", value.parse().unwrap());
            headers
        };
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        // An untrusted peer's header is ignored: anyone can write one.
        assert_eq!(
            limits.client_address(ip("198.51.100.1"), &headers("203.0.113.9")),
            ip("198.51.100.1")
        );
        // Through a trusted proxy: the address it saw, not what the client claimed before it.
        assert_eq!(
            limits.client_address(ip("10.0.0.2"), &headers("1.2.3.4, 203.0.113.9")),
            ip("203.0.113.9")
        );
        // Through two trusted proxies.
        assert_eq!(
            limits.client_address(ip("10.0.0.2"), &headers("203.0.113.9, 10.0.0.3")),
            ip("203.0.113.9")
        );
        assert_eq!(
            limits.client_address(ip("10.0.0.2"), &HeaderMap::new()),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn no_limit_lets_everything_through() {
        let limits = RateLimits::new(None, Vec::new());
        for _ in 0..10_000 {
            assert!(limits.check("default").is_ok());
        }
    }
}
