//! The worker's room: how many deliveries it may hold (claimed and ready, or in flight), per hook
//! and in all, and how many it holds. The store takes room in here for every lease it makes, in the
//! transaction that makes it, and the worker gives it back as attempts finish.

use std::collections::HashMap;

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
}

impl Capacity {
    /// Closed until `open`.
    pub fn new(per_hook: usize, total: usize) -> Capacity {
        Capacity {
            per_hook,
            total,
            turn: per_hook,
            state: Default::default(),
        }
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
        self.room_in(&state, hook)
            .saturating_sub(held)
            .min(self.total.saturating_sub(state.total_held))
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
            self.capacity.give_back(hook);
        }
    }
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        if !self.committed {
            for (hook, n) in &self.hooks {
                for _ in 0..*n {
                    self.capacity.give_back(hook);
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
