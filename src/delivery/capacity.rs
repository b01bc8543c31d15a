//! The worker's room: how many deliveries it may hold (claimed and ready, or in flight), per hook
//! and in all, and how many it holds. The store takes room in here for every lease it makes, in the
//! transaction that makes it, and the worker gives it back as attempts finish.
//!
//! A hook with a rate limit (`rate_limit_per_second`) also has room in time: a lease of it takes
//! one emission interval (GCRA, as `governor` counts), so that its deliveries are leased, and so
//! sent, no faster than its limit, while the other hooks' room is untouched. What waits for the
//! limit stays in the outbox, delayed, not failed.

use std::collections::HashMap;
use std::time::Instant;

/// How many deliveries the delivery worker can hold (claimed and ready, or in flight), per hook and
/// in all, and how many it holds. Every lease is taken against it, by a claim or straight from the
/// transaction that stores fresh deliveries, and both run under the writer's lock. A hook's room
/// may be set apart from the others' (the worker gives a slow hook less, so that what it holds
/// can start before the leases end). Closed (no room) while no worker runs.
#[derive(Debug)]
pub struct Capacity {
    /// A hook's room unless set for that hook.
    per_hook: usize,
    total: usize,
    /// How many of a hook's deliveries a claim takes before every other waiting hook has had its
    /// turn: see the claim walk in `store::outbox::claims`.
    turn: usize,
    state: std::sync::Mutex<CapacityState>,
    /// What rate limits measure time from.
    epoch: Instant,
}

/// A hook's rate limit, as a GCRA: `tat` (the theoretical arrival time of the next lease, in ms
/// after `epoch`) moves on by `interval` at each lease; a lease is allowed while `tat` is at most
/// `tolerance` ahead of now.
#[derive(Debug, Clone, Copy)]
struct RateLimit {
    per_second: f64,
    interval: f64,
    tolerance: f64,
    tat: f64,
}

impl RateLimit {
    fn new(per_second: f64) -> RateLimit {
        let interval = 1000.0 / per_second;
        // A burst of up to 50 ms' worth, so that a fast limit does not cost a claim per delivery;
        // one lease at a time below 40 per second.
        let burst = (per_second / 20.0).floor().max(1.0);
        RateLimit {
            per_second,
            interval,
            tolerance: (burst - 1.0) * interval,
            tat: 0.0,
        }
    }

    /// How many leases are allowed at `now` (ms after the epoch).
    fn room(&self, now: f64) -> usize {
        let tat = self.tat.max(now);
        if tat - now > self.tolerance {
            0
        } else {
            ((now + self.tolerance - tat) / self.interval).floor() as usize + 1
        }
    }

    /// How long until one lease is allowed, in ms.
    fn wait(&self, now: f64) -> f64 {
        (self.tat.max(now) - self.tolerance - now).max(0.0)
    }
}

#[derive(Debug, Default)]
struct CapacityState {
    open: bool,
    held: HashMap<String, usize>,
    /// Hooks whose room is not `per_hook`.
    room: HashMap<String, usize>,
    total_held: usize,
    /// The hook the last claim took from: the next claim's walk over the waiting hooks starts
    /// after it (see the claim walk in `store::outbox::claims`).
    last_claimed_hook: String,
    /// Hooks with a rate limit.
    rates: HashMap<String, RateLimit>,
}

impl Capacity {
    /// Closed until `open`.
    pub fn new(per_hook: usize, total: usize) -> Capacity {
        Capacity {
            per_hook,
            total,
            turn: per_hook,
            state: Default::default(),
            epoch: Instant::now(),
        }
    }

    fn now(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64() * 1000.0
    }

    /// The hooks' rate limits (deliveries per second), all of them: a hook not listed has none.
    /// A hook whose limit is unchanged keeps its place in time.
    pub fn set_rate_limits(&self, limits: &[(String, f64)]) {
        let mut state = self.state();
        let mut rates = HashMap::with_capacity(limits.len());
        for (hook, per_second) in limits {
            if !(per_second.is_finite() && *per_second > 0.0) {
                continue;
            }
            let limit = match state.rates.get(hook) {
                Some(known) if known.per_second == *per_second => *known,
                _ => RateLimit::new(*per_second),
            };
            rates.insert(hook.clone(), limit);
        }
        state.rates = rates;
    }

    /// Sets or removes (`None`) one hook's rate limit, the others' left as they are.
    pub fn set_rate_limit(&self, hook: &str, per_second: Option<f64>) {
        let mut state = self.state();
        match per_second.filter(|r| r.is_finite() && *r > 0.0) {
            Some(per_second) => {
                if state.rates.get(hook).map(|known| known.per_second) != Some(per_second) {
                    state
                        .rates
                        .insert(hook.to_owned(), RateLimit::new(per_second));
                }
            }
            None => {
                state.rates.remove(hook);
            }
        }
    }

    /// How long until `hook`'s rate limit allows one more lease (ms), when it is what leaves the
    /// hook no room now: a claim looks again then rather than when a slot frees.
    pub fn rate_limited_for(&self, hook: &str) -> Option<i64> {
        let state = self.state();
        let limit = state.rates.get(hook)?;
        let now = self.now();
        (limit.room(now) == 0).then(|| limit.wait(now).ceil().max(1.0) as i64)
    }

    /// A claim takes at most `turn` deliveries of a hook (the worker gives it one round of its
    /// slots) until every waiting hook has had that much, and only then what room is left.
    pub fn taking_turns_of(mut self, turn: usize) -> Capacity {
        self.turn = turn.max(1);
        self
    }

    /// How many deliveries of one hook a claim takes in its first round over the waiting hooks.
    pub(crate) fn turn(&self) -> usize {
        self.turn
    }

    fn state(&self) -> std::sync::MutexGuard<'_, CapacityState> {
        // The counts are updated in single steps; a panic elsewhere leaves them whole.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn open(&self) {
        self.state().open = true;
    }

    /// No more room until opened again; what is held stays counted until given back.
    pub fn close(&self) {
        self.state().open = false;
    }

    /// Sets how many deliveries of `hook` may be held at once (by default, `per_hook`). Lowering
    /// it leaves what is held alone; nothing more is leased until the hook is below it.
    pub fn set_room(&self, hook: &str, room: usize) {
        let mut state = self.state();
        if room == self.per_hook {
            state.room.remove(hook);
        } else if let Some(known) = state.room.get_mut(hook) {
            *known = room;
        } else {
            state.room.insert(hook.to_owned(), room);
        }
    }

    /// Gives `hook` the default room again.
    pub fn reset_room(&self, hook: &str) {
        self.state().room.remove(hook);
    }

    /// How many deliveries of `hook` may be held at once.
    #[cfg(test)]
    pub fn room(&self, hook: &str) -> usize {
        self.room_in(&self.state(), hook)
    }

    fn room_in(&self, state: &CapacityState, hook: &str) -> usize {
        state.room.get(hook).copied().unwrap_or(self.per_hook)
    }

    /// How many more deliveries of `hook` may be leased now.
    pub fn free_for(&self, hook: &str) -> usize {
        let state = self.state();
        if !state.open {
            return 0;
        }
        let held = state.held.get(hook).copied().unwrap_or(0);
        let in_time = state
            .rates
            .get(hook)
            .map_or(usize::MAX, |limit| limit.room(self.now()));
        self.room_in(&state, hook)
            .saturating_sub(held)
            .min(self.total.saturating_sub(state.total_held))
            .min(in_time)
    }

    /// How many more deliveries may be leased now, whatever their hooks.
    pub fn free(&self) -> usize {
        let state = self.state();
        if !state.open {
            return 0;
        }
        self.total.saturating_sub(state.total_held)
    }

    /// Counts one more delivery of `hook` held, if there is room.
    pub(crate) fn take(&self, hook: &str) -> bool {
        let mut state = self.state();
        let held = state.held.get(hook).copied().unwrap_or(0);
        if !state.open || held >= self.room_in(&state, hook) || state.total_held >= self.total {
            return false;
        }
        let now = self.now();
        if let Some(limit) = state.rates.get_mut(hook) {
            if limit.room(now) == 0 {
                return false;
            }
            limit.tat = limit.tat.max(now) + limit.interval;
        }
        state.total_held += 1;
        match state.held.get_mut(hook) {
            Some(held) => *held += 1,
            None => {
                state.held.insert(hook.to_owned(), 1);
            }
        }
        true
    }

    /// A held delivery of `hook` is no longer held: its attempt was recorded, it went back to the
    /// outbox, or its lease was never committed.
    pub fn give_back(&self, hook: &str) {
        let mut state = self.state();
        if let Some(held) = state.held.get_mut(hook) {
            *held -= 1;
            if *held == 0 {
                state.held.remove(hook);
            }
            state.total_held -= 1;
        }
    }

    /// Room taken for a lease that was not made after all: the slot and, for a rate-limited hook,
    /// its place in time.
    fn untake(&self, hook: &str) {
        self.give_back(hook);
        let mut state = self.state();
        if let Some(limit) = state.rates.get_mut(hook) {
            limit.tat -= limit.interval;
        }
    }

    /// The hooks with no room now: all their room held, or their rate limit reached. A claim
    /// takes nothing from them, so their backlogs must not fill what it looks for.
    pub(crate) fn hooks_without_room(&self) -> Vec<String> {
        let state = self.state();
        let now = self.now();
        let held = |hook: &str| state.held.get(hook).copied().unwrap_or(0);
        let mut full: std::collections::BTreeSet<&str> = state
            .held
            .keys()
            .chain(state.room.keys())
            .filter(|hook| held(hook) >= self.room_in(&state, hook))
            .map(String::as_str)
            .collect();
        full.extend(
            state
                .rates
                .iter()
                .filter(|(_, limit)| limit.room(now) == 0)
                .map(|(hook, _)| hook.as_str()),
        );
        full.into_iter().map(str::to_owned).collect()
    }

    pub(crate) fn last_claimed_hook(&self) -> String {
        self.state().last_claimed_hook.clone()
    }

    pub(crate) fn claimed_from(&self, hook: &str) {
        let mut state = self.state();
        state.last_claimed_hook.clear();
        state.last_claimed_hook.push_str(hook);
    }

    /// Deliveries held, of `hook` or of every hook.
    pub fn held(&self, hook: Option<&str>) -> usize {
        let state = self.state();
        match hook {
            Some(hook) => state.held.get(hook).copied().unwrap_or(0),
            None => state.total_held,
        }
    }
}

/// Room taken in a transaction: given back unless the transaction committed.
pub(crate) struct Taken<'a> {
    pub(crate) capacity: &'a Capacity,
    /// Per hook, how many, in runs: a claim takes a hook's deliveries together, and a batch of
    /// events mostly goes to the same hooks in turn.
    hooks: Vec<(String, usize)>,
    committed: bool,
}

impl<'a> Taken<'a> {
    pub(crate) fn new(capacity: &'a Capacity) -> Taken<'a> {
        Taken {
            capacity,
            hooks: Vec::new(),
            committed: false,
        }
    }

    /// The transaction committed: what it took stays held.
    pub(crate) fn keep(mut self) {
        self.committed = true;
    }

    pub(crate) fn take(&mut self, hook: &str) -> bool {
        if !self.capacity.take(hook) {
            return false;
        }
        match self.hooks.last_mut() {
            Some((last, n)) if last == hook => *n += 1,
            _ => self.hooks.push((hook.to_owned(), 1)),
        }
        true
    }

    /// Gives back one delivery's room of `hook` taken here and not used after all (a claim that
    /// reserved room for rows another process took first).
    pub(crate) fn give_back(&mut self, hook: &str) {
        if let Some(entry) = self
            .hooks
            .iter_mut()
            .rev()
            .find(|(h, n)| h == hook && *n > 0)
        {
            entry.1 -= 1;
            self.capacity.untake(hook);
        }
    }
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        if !self.committed {
            for (hook, n) in &self.hooks {
                for _ in 0..*n {
                    self.capacity.untake(hook);
                }
            }
        }
    }
}

/// Fresh deliveries leased to the worker in the transaction that stores them, while it has room:
/// they go out without waiting for a claim.
pub struct DirectLease<'a> {
    pub capacity: &'a Capacity,
    pub lease_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_limited_hook_gets_room_in_time_and_the_others_are_not_slowed() {
        let capacity = Capacity::new(100, 1000);
        capacity.open();
        capacity.set_rate_limits(&[("hook_slow".into(), 20.0)]);
        assert_eq!(capacity.free_for("hook_slow"), 1);
        assert!(capacity.take("hook_slow"));
        assert!(!capacity.take("hook_slow"), "the next one waits 50 ms");
        assert_eq!(capacity.free_for("hook_slow"), 0);
        let wait = capacity.rate_limited_for("hook_slow").unwrap();
        assert!((1..=50).contains(&wait), "{wait}");
        for _ in 0..100 {
            assert!(capacity.take("hook_fast"));
        }
        assert_eq!(capacity.rate_limited_for("hook_fast"), None);
        std::thread::sleep(std::time::Duration::from_millis(wait as u64 + 5));
        assert!(capacity.take("hook_slow"));
    }

    #[test]
    fn room_taken_in_a_transaction_that_did_not_commit_gives_the_time_back() {
        let capacity = Capacity::new(100, 1000);
        capacity.open();
        capacity.set_rate_limits(&[("hook_slow".into(), 1.0)]);
        {
            let mut taken = Taken::new(&capacity);
            assert!(taken.take("hook_slow"));
            assert!(!taken.take("hook_slow"));
        }
        assert_eq!(capacity.held(Some("hook_slow")), 0);
        assert!(
            capacity.take("hook_slow"),
            "the rolled-back lease used no time"
        );
    }

    #[test]
    fn a_fast_limit_allows_a_burst_of_50_ms_worth() {
        let capacity = Capacity::new(1000, 10_000);
        capacity.open();
        capacity.set_rate_limits(&[("hook".into(), 1000.0)]);
        assert_eq!(capacity.free_for("hook"), 50);
        // Removing the limit frees the hook at once.
        for _ in 0..50 {
            assert!(capacity.take("hook"));
        }
        assert!(!capacity.take("hook"));
        capacity.set_rate_limits(&[]);
        assert!(capacity.take("hook"));
    }
}
