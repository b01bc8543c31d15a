//! Each hook's pace: how long its attempts take, and so how deep its ready queue may be.

use std::collections::HashMap;
use std::time::Duration;

/// Rounds of attempts claimed ahead for a fast hook, beyond the round in flight: enough to keep its
/// slots full from one trip to the next. A fast receiver empties a round in well under a
/// millisecond, so the ready queue has to cover a whole trip (its wait for the writer included) and
/// the spacing: with two rounds ahead a single loopback hook's slots sat empty for 29 % of its
/// attempts (waiting for the next claim), with eight for 5 %, and throughput rose by a fifth. The
/// room must also take what the change log's consumer stores while the last batch is still in
/// flight or unrecorded, so that fresh deliveries are leased as they are stored and handed over,
/// not claimed (a second write of each row, and the claims' scans): on PostgreSQL, with eight 77 %
/// of them were claimed; with 32 (528 a hook) 43 to 50 % once the consumer had got faster; with 128
/// (2,064 a hook) 2 to 24 %, and throughput rose from 7,300 to 8,800 events/s to 10,300 to
/// 10,700. A slow hook gets fewer (see `HookPace`); the depth costs no lease time (see
/// `READY_WAIT_TIMEOUTS`).
pub(super) const ROUNDS_AHEAD: usize = 128;
/// Rounds ahead of the worker's `max_in_flight` slots as a whole: it holds at most
/// `max_in_flight` times one more than this many deliveries in all (4,160 by default), payloads
/// included, and one hook at most half of that (`hook_room`), so that one fast hook's deep queue
/// leaves the others 2,096 (its 528 left them 1,584 of 2,112 with 32 rounds ahead a hook). Two
/// fast hooks may fill it, but a queue is deep only for a hook that empties it fast, so room comes
/// back within a fraction of a time-out. Its memory is bounded by this: near
/// `sandbox.max_payload_bytes` each, 4,160 deliveries are about 2 GiB; at a kilobyte, 4 MiB.
pub(super) const ROUNDS_AHEAD_IN_ALL: usize = 64;

/// How many deliveries of one hook the worker may hold with `rounds` rounds ahead: at most half
/// of what it holds in all (see `ROUNDS_AHEAD_IN_ALL`), never less than one round in flight.
pub(super) fn hook_room(per_hook: usize, max_in_flight: usize, rounds: usize) -> usize {
    let half_of_all = max_in_flight.saturating_mul(1 + ROUNDS_AHEAD_IN_ALL) / 2;
    per_hook
        .saturating_mul(1 + rounds)
        .min(half_of_all.max(per_hook))
}
/// Rounds ahead for a hook whose attempts this worker has not timed yet: with one, a ready
/// delivery waits for at most one round of attempts, so at most one time-out.
pub(super) const FIRST_ROUNDS_AHEAD: usize = 1;

/// How long each hook's attempts take lately, and so how many rounds of them the worker claims
/// ahead: a ready delivery must start within a time-out (`READY_WAIT_TIMEOUTS`), and one `n` rounds
/// back waits about `n` attempts' time. A hook that answers in a millisecond gets `ROUNDS_AHEAD`,
/// one whose attempts run to the time-out one round; a hook not timed yet `FIRST_ROUNDS_AHEAD`.
#[derive(Default)]
pub(super) struct HookPace {
    hooks: HashMap<String, Pace>,
}

struct Pace {
    /// A moving average of the hook's attempts' durations.
    average_ms: f64,
    rounds_ahead: usize,
}

impl HookPace {
    /// Notes how long an attempt took; returns the hook's rounds ahead when they change.
    pub(super) fn attempt_took(
        &mut self,
        hook: &str,
        duration_ms: i64,
        timeout: Duration,
    ) -> Option<usize> {
        let took = duration_ms.max(0) as f64;
        let Some(pace) = self.hooks.get_mut(hook) else {
            let rounds_ahead = rounds_ahead_at(took, timeout);
            self.hooks.insert(
                hook.to_owned(),
                Pace {
                    average_ms: took,
                    rounds_ahead,
                },
            );
            return Some(rounds_ahead);
        };
        pace.average_ms += (took - pace.average_ms) / 8.0;
        let rounds_ahead = rounds_ahead_at(pace.average_ms, timeout);
        if rounds_ahead == pace.rounds_ahead {
            return None;
        }
        pace.rounds_ahead = rounds_ahead;
        Some(rounds_ahead)
    }

    /// Forgets the hooks for which `holds_nothing` is true, and returns them: they are timed
    /// afresh when they next send. Subscriptions come and go, so the worker must not keep every
    /// hook it ever sent to.
    pub(super) fn forget_idle(&mut self, holds_nothing: impl Fn(&str) -> bool) -> Vec<String> {
        let idle: Vec<String> = self
            .hooks
            .keys()
            .filter(|hook| holds_nothing(hook))
            .cloned()
            .collect();
        for hook in &idle {
            self.hooks.remove(hook);
        }
        idle
    }
}

/// Rounds ahead for attempts that take `average_ms`: the last of them should start within half a
/// time-out, the other half being room for the average to be wrong.
fn rounds_ahead_at(average_ms: f64, timeout: Duration) -> usize {
    let half_timeout_ms = timeout.as_secs_f64() * 1000.0 / 2.0;
    ((half_timeout_ms / average_ms.max(1.0)) as usize).clamp(1, ROUNDS_AHEAD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hook_holds_at_most_half_of_the_workers_room() {
        assert_eq!(
            hook_room(16, 64, ROUNDS_AHEAD),
            16 * 129,
            "the defaults: under half"
        );
        assert_eq!(hook_room(16, 64, 1), 32);
        assert_eq!(hook_room(32, 64, ROUNDS_AHEAD), 64 * 65 / 2, "half of all");
        assert_eq!(hook_room(64, 64, ROUNDS_AHEAD), 64 * 65 / 2);
        assert_eq!(
            hook_room(usize::MAX / 2, usize::MAX / 2, ROUNDS_AHEAD),
            usize::MAX / 2,
            "no wrapping round for settings out of all reason"
        );
        assert_eq!(
            hook_room(64, 1, ROUNDS_AHEAD),
            64,
            "one round in flight at least"
        );
    }

    #[test]
    fn a_hooks_rounds_ahead_follow_how_long_its_attempts_take() {
        let timeout = Duration::from_secs(15);
        assert_eq!(rounds_ahead_at(0.0, timeout), ROUNDS_AHEAD);
        assert_eq!(rounds_ahead_at(50.0, timeout), ROUNDS_AHEAD);
        assert_eq!(rounds_ahead_at(900.0, timeout), 8);
        assert_eq!(rounds_ahead_at(1_500.0, timeout), 5);
        assert_eq!(rounds_ahead_at(15_000.0, timeout), 1, "at least one");
        let mut pace = HookPace::default();
        assert_eq!(pace.attempt_took("a", 2, timeout), Some(ROUNDS_AHEAD));
        assert_eq!(pace.attempt_took("a", 3, timeout), None, "unchanged");
        // A fast hook turning slow loses its depth within a few attempts, not at the first.
        let mut rounds = Vec::new();
        for _ in 0..20 {
            rounds.extend(pace.attempt_took("a", 15_000, timeout));
        }
        assert!(rounds[0] > 1, "{rounds:?}");
        assert_eq!(rounds.last(), Some(&1));
        assert!(rounds.windows(2).all(|w| w[0] > w[1]), "{rounds:?}");
        assert_eq!(
            pace.attempt_took("b", 15_000, timeout),
            Some(1),
            "hooks apart"
        );
        assert_eq!(pace.forget_idle(|hook| hook == "a"), ["a"]);
        assert_eq!(
            pace.attempt_took("a", 2, timeout),
            Some(ROUNDS_AHEAD),
            "timed afresh"
        );
    }
}
