//! Delivery: the worker that takes fresh deliveries from the tracker (`Handoff`) and claims due
//! ones from the outbox, signs and POSTs them, records every attempt and schedules the next one.

mod capacity;
mod dispatch;
mod held;
mod pace;
mod pacer;
mod retry;
pub mod signing;
mod target;
mod worker;

pub(crate) use capacity::Taken;
pub use capacity::{Capacity, DirectLease};
pub use dispatch::Dispatcher;
pub use retry::{parse_retry_after, AttemptResult, RetryPolicy};
pub use target::{GuardedResolver, TargetError, TargetPolicy};
pub use worker::{Handoff, Worker};

/// The most of a response body that is kept in the attempt log.
pub const RESPONSE_BODY_CAP: usize = 20 * 1024;

/// `user-agent` of every delivery.
pub const USER_AGENT: &str = concat!("herald/", env!("CARGO_PKG_VERSION"));

/// An authorization header as herald shows it after it was saved: the scheme, never the credential
/// (`Basic c3a2...` -> `Basic ********`).
pub fn mask_authorization(value: &str) -> String {
    match value.trim().split_once(' ') {
        Some((scheme, _)) => format!("{scheme} ********"),
        None => "********".into(),
    }
}

/// A signing secret as herald shows it after creation: the prefix and the last four characters.
pub fn mask_secret(secret: &str) -> String {
    let tail: String = secret
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("whsec_********{tail}")
}
