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

/// Authorization schemes whose name is shown in front of the mask: the IANA registry's and the
/// common vendor ones. Any other first word may be part of the credential.
const KNOWN_SCHEMES: &[&str] = &[
    "Basic",
    "Bearer",
    "Token",
    "Digest",
    "Negotiate",
    "NTLM",
    "HOBA",
    "Mutual",
    "SCRAM-SHA-1",
    "SCRAM-SHA-256",
    "vapid",
    "OAuth",
    "ApiKey",
    "Api-Key",
    "Hawk",
    "AWS4-HMAC-SHA256",
    "HMAC",
    "Signature",
    "SSWS",
    "Splunk",
];

/// How many trailing characters of an unknown credential are shown, and the shortest credential
/// that shows any (a short one would be half given away).
const SHOWN_TAIL: usize = 4;
const SHORTEST_WITH_TAIL: usize = 12;

/// An authorization header as herald shows it after it was saved: a known scheme and a mask
/// (`Basic c3a2...` -> `Basic ********`); anything else masked but for its last characters, as
/// the seed pages' product shows stored credentials (`sk_live_abc x` -> `********bc x`).
pub fn mask_authorization(value: &str) -> String {
    let value = value.trim();
    if let Some((scheme, _)) = value.split_once(' ') {
        if KNOWN_SCHEMES.iter().any(|k| k.eq_ignore_ascii_case(scheme)) {
            return format!("{scheme} ********");
        }
    }
    let length = value.chars().count();
    if length < SHORTEST_WITH_TAIL {
        return "********".into();
    }
    let tail: String = value.chars().skip(length - SHOWN_TAIL).collect();
    format!("********{tail}")
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
