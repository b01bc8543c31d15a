//! The worker loop's decisions, apart from its I/O: when to make a trip to the database, whether
//! that trip claims, how long to nap otherwise, and when a stop is over. The loop tells the
//! `Pacer` what happened (attempts finished, a trip came back, the store said deliveries wait) and
//! what it holds (`Load`); `decide` answers with a `Step`. Nothing here reads a clock or touches a
//! channel, so every rule is tested with made-up instants.

use std::time::{Duration, Instant};

use crate::backoff::Backoff;

/// Claims per transaction at most.
pub(super) const CLAIM_BATCH: usize = 200;
/// Finished attempts waiting this many start a trip at once, so a transaction stays bounded.
pub(super) const RECORD_BATCH: usize = 256;
/// How many attempts may be in flight while `unrecorded` others (finished, or in the trip under way)
/// wait to be recorded: together never more than `max_in_flight + RECORD_BATCH`. Those are what a
/// crash sends twice, so a busy worker, or one whose database does not answer, stops sending there
/// rather than piling up attempts it cannot record.
pub(super) fn in_flight_limit(max_in_flight: usize, unrecorded: usize) -> usize {
    max_in_flight.min((max_in_flight + RECORD_BATCH).saturating_sub(unrecorded))
}
/// How long a finished attempt may wait to be recorded when nothing else needs a trip: records
/// are not on the way of any delivery, so a quiet outbox records several attempts per
/// transaction. A crash in between costs those deliveries a second send when their leases end.
pub(super) const RECORD_DELAY: Duration = Duration::from_millis(10);
/// Trips start at least this far apart unless one is needed at once (a slot would sit idle, new
/// deliveries were stored, a retry fell due, a stop is under way). Most of a trip's cost is fixed
/// (the transaction, the pages its commit writes, the hand-off to a blocking thread), so under load
/// fewer and larger trips carry the same deliveries for less; the attempts themselves never wait
/// for it, they start from the ready queue.
pub(super) const TRIP_SPACING: Duration = Duration::from_millis(2);
/// How often the ready queue is searched for deliveries that waited too long, and the pace of
/// hooks that hold nothing any more is forgotten.
pub(super) const READY_WAIT_CHECK: Duration = Duration::from_secs(1);
/// The longest the worker sleeps without looking, in case a delivery was stored by another process.
pub(super) const MAX_IDLE: Duration = Duration::from_secs(1);

/// What the worker holds when it decides.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Load {
    /// A trip is under way: no other starts until it is back.
    pub trip_under_way: bool,
    /// Room the capacity has for more leases, whatever their hooks.
    pub free_room: usize,
    /// Deliveries ready to start, and attempts in flight.
    pub ready: usize,
    pub in_flight: usize,
    pub max_in_flight: usize,
    /// Finished attempts not yet recorded.
    pub unrecorded: usize,
    /// Ready deliveries that waited too long, waiting to be handed back to the outbox.
    pub to_hand_back: usize,
}

/// What the loop does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// The stop is over: nothing is in flight and everything is recorded, or the stop ran out of
    /// time (what is left comes back when its leases end).
    Stop,
    /// Start a trip now: record, hand back, and claim up to `claim_limit` (0: claim nothing).
    Trip { claim_limit: usize },
    /// Wait for something to happen, or for `Nap` to pass.
    Wait(Nap),
}

/// How long the loop may sleep, and what waking from it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Nap {
    pub length: Duration,
    /// The nap ends for the ready queue's check alone (`ready_wait_check_due` does it): nothing
    /// else is due then.
    pub for_the_check: bool,
    /// A trip is wanted but waits for the spacing (or for records to gather).
    pub paced: bool,
    /// A failed trip's backoff is what the nap waits out.
    pub backing_off: bool,
}

/// The state behind the worker loop's decisions.
#[derive(Debug)]
pub(super) struct Pacer {
    /// Something may be claimable: the next trip claims (if there is room).
    look_again: bool,
    /// A trip is needed now rather than at the next spacing: see `TRIP_SPACING`.
    urgent: bool,
    /// The last claim left due deliveries behind: a freed slot has something to claim. Without
    /// it, a finished attempt claims nothing and waits up to `RECORD_DELAY` to be recorded with
    /// others (fresh deliveries come through the handoff), so a quiet outbox costs a few write
    /// transactions a second, not one per delivery.
    backlog: bool,
    last_trip_at: Option<Instant>,
    /// When the oldest unrecorded attempt finished.
    unrecorded_since: Option<Instant>,
    /// After a failed trip, the next waits out its backoff; attempts go on meanwhile.
    no_trip_before: Option<Instant>,
    backoff: Backoff,
    /// How long to sleep when nothing else says: until the next delivery falls due, at most
    /// `MAX_IDLE`.
    idle_nap: Duration,
    stopping_since: Option<Instant>,
    /// A stop waits this long for attempts in flight, then leaves them to their leases.
    stop_deadline: Duration,
    next_ready_wait_check: Instant,
}

impl Pacer {
    /// A worker that starts at `now`: it claims at once, as something may be waiting.
    pub(super) fn new(now: Instant, stop_deadline: Duration) -> Pacer {
        Pacer {
            look_again: true,
            urgent: true,
            backlog: true,
            last_trip_at: None,
            unrecorded_since: None,
            no_trip_before: None,
            backoff: Backoff::default(),
            idle_nap: MAX_IDLE,
            stopping_since: None,
            stop_deadline,
            next_ready_wait_check: now + READY_WAIT_CHECK,
        }
    }

    pub(super) fn is_stopping(&self) -> bool {
        self.stopping_since.is_some()
    }

    /// The stop began; true the first time only.
    pub(super) fn stop(&mut self, now: Instant) -> bool {
        if self.stopping_since.is_some() {
            return false;
        }
        self.stopping_since = Some(now);
        true
    }

    /// Whether the ready queue is due for its check of deliveries that waited too long (not while
    /// stopping: the stop hands everything ready back). Schedules the next check.
    pub(super) fn ready_wait_check_due(&mut self, now: Instant) -> bool {
        if self.is_stopping() || now < self.next_ready_wait_check {
            return false;
        }
        self.next_ready_wait_check = now + READY_WAIT_CHECK;
        true
    }

    /// Room came free without an attempt finishing (a delivery was handed back, or reached its
    /// slot too late): worth a claim.
    pub(super) fn room_freed(&mut self) {
        self.look_again = true;
    }

    /// Attempts finished at `now`; `slot_left_empty`: a hook's slot freed with nothing ready
    /// for it, so it idles until the next claim.
    pub(super) fn attempts_finished(&mut self, now: Instant, slot_left_empty: bool) {
        self.urgent |= self.backlog && slot_left_empty;
        self.unrecorded_since.get_or_insert(now);
        // A slot freed: the next trip claims for it, if anything waits.
        self.look_again |= self.backlog;
    }

    /// The store said new deliveries wait unleased (a retry from the API): claim them at once.
    pub(super) fn deliveries_stored(&mut self) {
        self.look_again = true;
        self.urgent = true;
    }

    /// A trip came back done: the backoff is over.
    pub(super) fn trip_succeeded(&mut self) {
        self.backoff.reset();
        self.no_trip_before = None;
    }

    /// What the trip's claim said of what waits (`now_ms`: the time its `next_due` is measured
    /// against, Unix ms). A claim that came back full, or left due deliveries behind with room to
    /// take them, claims again at once; due deliveries of hooks without room wait for a slot of
    /// theirs to free (`backlog`); otherwise the loop sleeps until the next falls due.
    pub(super) fn claim_came_back(
        &mut self,
        next_due: Option<i64>,
        due_without_room: bool,
        now_ms: i64,
    ) {
        let due_now = next_due.is_some_and(|at| at <= now_ms);
        self.backlog = due_without_room || due_now;
        match next_due {
            _ if due_now => self.look_again = true,
            Some(at) => self.idle_nap = Duration::from_millis((at - now_ms) as u64).min(MAX_IDLE),
            None => self.idle_nap = MAX_IDLE,
        }
    }

    /// The trip failed at `now`; what it carried goes back to wait for the next, after a backoff.
    pub(super) fn trip_failed(&mut self, now: Instant, carried_records: bool) {
        if carried_records {
            self.unrecorded_since = Some(now);
        }
        self.no_trip_before = Some(now + self.backoff.failed());
        self.look_again = true;
    }

    /// The loop slept its whole `nap` without anything happening.
    pub(super) fn napped(&mut self, nap: &Nap) {
        if !nap.backing_off && !nap.for_the_check {
            self.look_again = true;
            // Woken for a due delivery rather than by the spacing.
            self.urgent |= !nap.paced;
            self.idle_nap = MAX_IDLE;
        }
    }

    /// What to do at `now`, holding `load`.
    pub(super) fn decide(&mut self, load: &Load, now: Instant) -> Step {
        let backing_off = self.no_trip_before.is_some_and(|t| now < t);
        let stopping = self.is_stopping();
        let mut paced_until = None;
        if !load.trip_under_way {
            let past_deadline = self
                .stopping_since
                .is_some_and(|t| now.saturating_duration_since(t) > self.stop_deadline);
            let all_done = load.in_flight == 0 && load.unrecorded == 0 && load.to_hand_back == 0;
            if stopping && (all_done || past_deadline) {
                return Step::Stop;
            }
            let claim = !stopping && self.look_again && load.free_room > 0;
            // Free slots, nothing ready to fill them, and due deliveries left to claim.
            let idle = self.backlog && load.ready == 0 && load.in_flight < load.max_in_flight;
            // A claim goes at the next spacing; records alone wait until enough of them waited,
            // or long enough.
            let not_before = if claim {
                self.last_trip_at.map(|t| t + TRIP_SPACING)
            } else {
                self.unrecorded_since.map(|t| t + RECORD_DELAY)
            };
            let due_now = self.urgent
                || idle
                || stopping
                || load.unrecorded >= RECORD_BATCH
                || not_before.is_none_or(|t| now >= t);
            let has_work = claim || load.unrecorded > 0 || load.to_hand_back > 0;
            if !backing_off && has_work {
                if due_now {
                    self.unrecorded_since = None;
                    self.look_again = false;
                    self.urgent = false;
                    self.last_trip_at = Some(now);
                    let claim_limit = if claim { CLAIM_BATCH } else { 0 };
                    return Step::Trip { claim_limit };
                }
                paced_until = not_before;
            }
        }
        let mut nap = Nap {
            length: match (self.no_trip_before, paced_until) {
                (Some(t), _) if backing_off => t.saturating_duration_since(now),
                (_, Some(t)) => t.saturating_duration_since(now).min(self.idle_nap),
                _ => self.idle_nap,
            },
            for_the_check: false,
            paced: paced_until.is_some(),
            backing_off,
        };
        if load.ready > 0 && !stopping {
            let until_check = self.next_ready_wait_check.saturating_duration_since(now);
            if until_check < nap.length {
                nap.length = until_check;
                nap.for_the_check = true;
            }
        }
        Step::Wait(nap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STOP_DEADLINE: Duration = Duration::from_secs(16);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn load() -> Load {
        Load {
            free_room: 100,
            max_in_flight: 10,
            ..Load::default()
        }
    }

    /// A pacer whose first claim went out at `t0` and found nothing more waiting.
    fn quiet_after_first_claim(t0: Instant) -> Pacer {
        let mut pacer = Pacer::new(t0, STOP_DEADLINE);
        assert_eq!(
            pacer.decide(&load(), t0),
            Step::Trip {
                claim_limit: CLAIM_BATCH
            }
        );
        pacer.trip_succeeded();
        pacer.claim_came_back(None, false, 0);
        pacer
    }

    fn wait(step: Step) -> Nap {
        match step {
            Step::Wait(nap) => nap,
            other => panic!("expected a wait, got {other:?}"),
        }
    }

    #[test]
    fn attempts_sent_and_not_yet_recorded_never_pass_a_crash_bound() {
        let max_in_flight = 64;
        let bound = max_in_flight + RECORD_BATCH;
        // A fast receiver and a database that does not answer: attempts finish at once and wait.
        let (mut in_flight, mut unrecorded) = (0, 0);
        for _ in 0..1_000 {
            in_flight = in_flight.max(in_flight_limit(max_in_flight, unrecorded));
            assert!(
                in_flight + unrecorded <= bound,
                "{in_flight} + {unrecorded}"
            );
            unrecorded += in_flight;
            in_flight = 0;
        }
        assert_eq!(unrecorded, bound, "it stops sending at the bound");
        // Recorded, they make room again; a quiet worker has its whole room in flight.
        assert_eq!(in_flight_limit(max_in_flight, 0), max_in_flight);
        assert_eq!(in_flight_limit(max_in_flight, RECORD_BATCH), max_in_flight);
        assert_eq!(
            in_flight_limit(max_in_flight, RECORD_BATCH + 10),
            max_in_flight - 10
        );
    }

    #[test]
    fn a_new_worker_claims_at_once_and_a_quiet_one_sleeps_the_idle_nap() {
        let t0 = Instant::now();
        let mut pacer = quiet_after_first_claim(t0);
        let nap = wait(pacer.decide(&load(), t0));
        assert_eq!(nap.length, MAX_IDLE);
        assert!(!nap.paced && !nap.backing_off && !nap.for_the_check);
        // Waking from it looks again: another process may have stored deliveries.
        pacer.napped(&nap);
        assert_eq!(
            pacer.decide(&load(), t0 + MAX_IDLE),
            Step::Trip {
                claim_limit: CLAIM_BATCH
            }
        );
    }

    #[test]
    fn a_claim_that_says_when_the_next_is_due_naps_until_then() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(t0, STOP_DEADLINE);
        pacer.decide(&load(), t0);
        pacer.trip_succeeded();
        pacer.claim_came_back(Some(1_250), false, 1_000);
        assert_eq!(wait(pacer.decide(&load(), t0)).length, ms(250));
        // A claim that came back full claims again at once.
        pacer.claim_came_back(Some(1_000), false, 1_000);
        assert_eq!(
            pacer.decide(&load(), t0 + ms(1)),
            Step::Trip {
                claim_limit: CLAIM_BATCH
            },
            "free slots with nothing ready and due deliveries waiting: no spacing"
        );
    }

    #[test]
    fn finished_attempts_on_a_quiet_outbox_wait_to_be_recorded_together() {
        let t0 = Instant::now();
        let mut pacer = quiet_after_first_claim(t0);
        let finished = t0 + ms(100);
        pacer.attempts_finished(finished, true);
        let with_records = Load {
            unrecorded: 3,
            ..load()
        };
        let nap = wait(pacer.decide(&with_records, finished));
        assert_eq!(nap.length, RECORD_DELAY);
        assert!(nap.paced);
        assert_eq!(
            pacer.decide(&with_records, finished + RECORD_DELAY),
            Step::Trip { claim_limit: 0 },
            "no backlog: recording claims nothing"
        );
        // A full batch of records goes at once.
        pacer.attempts_finished(finished + ms(20), false);
        let full = Load {
            unrecorded: RECORD_BATCH,
            ..load()
        };
        assert_eq!(
            pacer.decide(&full, finished + ms(20)),
            Step::Trip { claim_limit: 0 }
        );
    }

    #[test]
    fn with_a_backlog_a_freed_slot_claims_within_the_spacing() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(t0, STOP_DEADLINE);
        pacer.decide(&load(), t0);
        pacer.trip_succeeded();
        // Due deliveries wait for hooks without room.
        pacer.claim_came_back(None, true, 0);
        // A slot freed while the hook still has ready deliveries: not urgent, so at the spacing.
        let busy = Load {
            ready: 5,
            in_flight: 10,
            unrecorded: 1,
            ..load()
        };
        pacer.attempts_finished(t0 + ms(1), false);
        let nap = wait(pacer.decide(&busy, t0 + ms(1)));
        assert_eq!(nap.length, ms(1), "the rest of the 2 ms spacing");
        assert!(nap.paced);
        assert_eq!(
            pacer.decide(&busy, t0 + TRIP_SPACING),
            Step::Trip {
                claim_limit: CLAIM_BATCH
            }
        );
        // A slot left empty (nothing ready for its hook) claims at once, spacing or not.
        pacer.attempts_finished(t0 + TRIP_SPACING, true);
        assert_eq!(
            pacer.decide(&busy, t0 + TRIP_SPACING),
            Step::Trip {
                claim_limit: CLAIM_BATCH
            }
        );
    }

    #[test]
    fn without_room_nothing_is_claimed() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(t0, STOP_DEADLINE);
        let full = Load {
            free_room: 0,
            ..load()
        };
        assert!(matches!(pacer.decide(&full, t0), Step::Wait(_)));
        let full_with_records = Load {
            unrecorded: 1,
            ..full
        };
        assert_eq!(
            pacer.decide(&full_with_records, t0),
            Step::Trip { claim_limit: 0 }
        );
    }

    #[test]
    fn a_failed_trip_backs_off_and_then_carries_the_same_work() {
        let t0 = Instant::now();
        let mut pacer = quiet_after_first_claim(t0);
        pacer.trip_failed(t0 + ms(10), true);
        let with_records = Load {
            unrecorded: 2,
            ..load()
        };
        let nap = wait(pacer.decide(&with_records, t0 + ms(10)));
        assert!(nap.backing_off);
        assert_eq!(nap.length, ms(50));
        pacer.napped(&nap);
        assert_eq!(
            pacer.decide(&with_records, t0 + ms(60)),
            Step::Trip {
                claim_limit: CLAIM_BATCH
            }
        );
        // The next failure in a row waits twice as long; a success starts over.
        pacer.trip_failed(t0 + ms(70), true);
        assert_eq!(
            wait(pacer.decide(&with_records, t0 + ms(70))).length,
            ms(100)
        );
        pacer.trip_succeeded();
        pacer.trip_failed(t0 + ms(80), true);
        assert_eq!(
            wait(pacer.decide(&with_records, t0 + ms(80))).length,
            ms(50)
        );
    }

    #[test]
    fn a_stop_records_what_finished_then_ends_or_gives_up_at_its_deadline() {
        let t0 = Instant::now();
        let mut pacer = quiet_after_first_claim(t0);
        assert!(pacer.stop(t0));
        assert!(!pacer.stop(t0 + ms(1)), "once");
        let in_flight = Load {
            in_flight: 2,
            ..load()
        };
        assert!(matches!(pacer.decide(&in_flight, t0), Step::Wait(_)));
        let finishing = Load {
            in_flight: 1,
            unrecorded: 1,
            ..load()
        };
        assert_eq!(
            pacer.decide(&finishing, t0 + ms(5)),
            Step::Trip { claim_limit: 0 },
            "a stopping worker records at once and claims nothing"
        );
        assert_eq!(pacer.decide(&load(), t0 + ms(6)), Step::Stop);
        let mut stuck = Pacer::new(t0, STOP_DEADLINE);
        stuck.stop(t0);
        assert!(matches!(
            stuck.decide(&in_flight, t0 + STOP_DEADLINE),
            Step::Wait(_)
        ));
        assert_eq!(
            stuck.decide(&in_flight, t0 + STOP_DEADLINE + ms(1)),
            Step::Stop
        );
    }

    #[test]
    fn the_ready_queues_check_comes_each_second_and_waking_for_it_claims_nothing() {
        let t0 = Instant::now();
        let mut pacer = quiet_after_first_claim(t0);
        assert!(!pacer.ready_wait_check_due(t0));
        let holding = Load {
            ready: 3,
            in_flight: 10,
            ..load()
        };
        let later = t0 + ms(400);
        let nap = wait(pacer.decide(&holding, later));
        assert!(nap.for_the_check);
        assert_eq!(nap.length, READY_WAIT_CHECK - ms(400));
        pacer.napped(&nap);
        assert!(
            matches!(pacer.decide(&holding, t0 + READY_WAIT_CHECK), Step::Wait(_)),
            "a nap for the check alone does not make a trip"
        );
        assert!(pacer.ready_wait_check_due(t0 + READY_WAIT_CHECK));
        assert!(!pacer.ready_wait_check_due(t0 + READY_WAIT_CHECK + ms(1)));
        pacer.stop(t0 + READY_WAIT_CHECK * 3);
        assert!(!pacer.ready_wait_check_due(t0 + READY_WAIT_CHECK * 3));
    }

    #[test]
    fn stored_deliveries_are_claimed_at_once() {
        let t0 = Instant::now();
        let mut pacer = quiet_after_first_claim(t0);
        pacer.deliveries_stored();
        assert_eq!(
            pacer.decide(&load(), t0 + ms(1)),
            Step::Trip {
                claim_limit: CLAIM_BATCH
            }
        );
        // While a trip is under way no other starts.
        pacer.deliveries_stored();
        let under_way = Load {
            trip_under_way: true,
            ..load()
        };
        assert!(matches!(
            pacer.decide(&under_way, t0 + ms(2)),
            Step::Wait(_)
        ));
    }
}
