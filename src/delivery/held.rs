//! The ready queue: the deliveries the worker holds between the outbox and the receivers.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::store::{AttemptRecord, ClaimedDelivery};

/// The worker's deliveries between the outbox and the receivers: attempts in flight, and deliveries
/// claimed ahead (at most `pace::ROUNDS_AHEAD` more rounds per hook) that start the moment a slot frees,
/// without waiting for the database. Ready deliveries start in the order they were claimed, across hooks,
/// so none waits behind later claims (and past its lease).
#[derive(Default)]
pub(super) struct Held {
    pub(super) in_flight: HashMap<String, usize>,
    /// Per hook, ready deliveries with their place in the claim order.
    pub(super) ready: HashMap<String, VecDeque<(u64, ClaimedDelivery)>>,
    next_place: u64,
    /// Every delivery held, ready or in flight, by seq: a delivery is never held twice.
    seqs: HashSet<i64>,
    pub(super) total_in_flight: usize,
    pub(super) total_ready: usize,
}

impl Held {
    /// Queues a claimed delivery; false (and nothing queued) when it is held already.
    pub(super) fn add_ready(&mut self, delivery: ClaimedDelivery) -> bool {
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
    pub(super) fn take_startable(
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

    pub(super) fn attempt_ended(&mut self, record: &AttemptRecord) {
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
    pub(super) fn take_leased_until_before(&mut self, deadline: i64) -> Vec<ClaimedDelivery> {
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
    pub(super) fn take_ready(&mut self, hook: Option<&str>) -> Vec<ClaimedDelivery> {
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
}
