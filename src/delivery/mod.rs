//! Delivery: the worker that claims due deliveries from the outbox, signs and POSTs them, records
//! every attempt and schedules the next one.

mod retry;
pub mod signing;
mod target;
mod worker;

pub use retry::{parse_retry_after, AttemptResult, RetryPolicy};
pub use target::{GuardedResolver, TargetError, TargetPolicy};
pub use worker::{Sender, Worker};

/// The most of a response body that is kept in the attempt log.
pub const RESPONSE_BODY_CAP: usize = 20 * 1024;

/// `user-agent` of every delivery.
pub const USER_AGENT: &str = concat!("herald/", env!("CARGO_PKG_VERSION"));
