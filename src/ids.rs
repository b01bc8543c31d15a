//! Public identifiers: a short prefix that says what the id names, then a time-ordered UUID (v7).
//!
//! Random rather than sequential so that a receiver deduplicating on `webhook-id` never confuses two
//! messages, even across a database that was recreated.

use uuid::Uuid;

fn prefixed(prefix: &str) -> String {
    format!("{prefix}_{}", Uuid::now_v7().simple())
}

/// A hook (a subscription made through `EPT_WebhookSubscribe` is a hook too).
pub fn hook_id() -> String {
    prefixed("hook")
}

/// A backfill: existing rows queued as events for one hook.
pub fn backfill_id() -> String {
    prefixed("bf")
}

/// An event: one firing of a trigger for one row.
pub fn event_id() -> String {
    prefixed("evt")
}

/// A message: one event for one hook. Sent as `webhook-id`, the same for every attempt.
pub fn message_id() -> String {
    prefixed("msg")
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_carry_their_prefix_and_are_unique() {
        let a = super::message_id();
        let b = super::message_id();
        assert!(a.starts_with("msg_") && a.len() == 36, "{a}");
        assert_ne!(a, b);
    }
}
