//! Nodes on PostgreSQL: several herald processes on one database. Each beats into `herald_nodes`
//! (on the database's clock); the change log's consumer is whichever holds an advisory lock, taken
//! on a connection of its own. PostgreSQL releases the lock the moment that connection ends (the
//! process died, the network or the server dropped it), and the other nodes try for it every
//! `Takeover::try_every`: a takeover within a few seconds, decided by the database, with no clock in it.
//! A holder that cannot reach its lock's connection any more gives the role up before its next
//! batch; a batch it had already begun is fenced by consumption itself (`commit_consumed_changes`
//! stores nothing if another consumer took those changes first).
//!
//! Every process also holds a lock of its own, its presence, on another connection for as long as
//! it runs. A delivery it leased is live while that lock is held: the consumer releases the leases
//! of processes whose presence is gone (killed, cut off) at its heartbeat, so that another node
//! sends them within seconds instead of when the lease runs out (two time-outs and a margin).

use std::time::{Duration, Instant};

use postgres::Client;

use super::connection::{PgConn, Queries};
use super::signals::deliveries_waiting;
use super::{describe, Postgres, Result, StoreError, DB_NOW_MS};
use crate::store::{ConsumerRole, NodeBeat, NodeStatus, Nodes};

/// What a takeover is made of, fitted into `postgres.takeover_seconds`: how often a node that is
/// not the consumer tries for the role, and how long the server waits on a silent lock connection
/// before it counts it dead and frees its locks (keepalives: idle, then `count` probes
/// `interval` apart). A process that dies is replaced within `try_every` (its connection closes);
/// a machine that vanishes without closing it, within the whole budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Takeover {
    pub try_every: Duration,
    pub keepalive_idle_secs: u32,
    pub keepalive_interval_secs: u32,
    pub keepalive_count: u32,
}

impl Takeover {
    /// The timings that fit `budget` (at least 4 s, see `config::TAKEOVER_SECONDS`): a sixth of it
    /// between tries (from 0.5 s to 5 s), the rest to the keepalives, two probes after the idle
    /// time, in the whole seconds the server counts.
    pub fn within(budget: Duration) -> Takeover {
        let try_every = (budget / 6).clamp(Duration::from_millis(500), Duration::from_secs(5));
        let keepalives = (budget - try_every).as_secs().max(3) as u32;
        let keepalive_count = 2;
        let keepalive_interval_secs = (keepalives / 4).max(1);
        let keepalive_idle_secs = (keepalives - keepalive_interval_secs * keepalive_count).max(1);
        Takeover {
            try_every,
            keepalive_idle_secs,
            keepalive_interval_secs,
            keepalive_count,
        }
    }

    /// The longest a takeover takes after the consumer's machine vanished.
    #[cfg(test)]
    fn longest(&self) -> Duration {
        Duration::from_secs(u64::from(
            self.keepalive_idle_secs + self.keepalive_interval_secs * self.keepalive_count,
        )) + self.try_every
    }
}

/// An advisory lock's key for `name`: FNV-1a, stable across versions and processes, unlike std's
/// hasher.
fn lock_key(name: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

/// The advisory lock of the consumer's role: herald's, per schema (two herald schemas in one
/// database have a consumer each).
fn consumer_lock(schema: &str) -> i64 {
    lock_key(&format!("herald consumer {schema}"))
}

/// The advisory lock a process holds while it runs: `process` is who leases (`Postgres::node`).
fn presence_lock(schema: &str, process: &str) -> i64 {
    lock_key(&format!("herald process {schema} {process}"))
}

/// A connection of its own that the server counts dead after a few silent seconds, so that a
/// node whose machine vanished loses its locks quickly (`name` shows in `pg_stat_activity`).
fn lock_connection(store: &Postgres, name: &str) -> Result<PgConn> {
    let mut client = store.dedicated_client()?;
    let Takeover {
        keepalive_idle_secs,
        keepalive_interval_secs,
        keepalive_count,
        ..
    } = store.takeover();
    Client::batch_execute(
        &mut client,
        &format!(
            "SET tcp_keepalives_idle = {keepalive_idle_secs};
             SET tcp_keepalives_interval = {keepalive_interval_secs};
             SET tcp_keepalives_count = {keepalive_count};
             SET application_name = '{name}'"
        ),
    )?;
    Ok(client)
}

fn node_from_row(row: &postgres::Row) -> NodeStatus {
    NodeStatus {
        name: row.get(0),
        started_at: row.get(1),
        heartbeat_at: row.get(2),
        script_set: row.get(3),
        consumer: row.get(4),
        version: row.get(5),
        heartbeat_age_ms: row.get::<_, i64>(6).max(0),
    }
}

impl Nodes for Postgres {
    fn heartbeat(&self, beat: &NodeBeat) -> Result<()> {
        self.write_noting("recording this node's heartbeat", |tx| {
            tx.execute(
                &format!(
                    "INSERT INTO herald_nodes (name, started_at, heartbeat_at, script_set, consumer, version)
                     VALUES ($1, $2, {DB_NOW_MS}, $3, $4, $5)
                     ON CONFLICT (name) DO UPDATE SET started_at = excluded.started_at,
                         heartbeat_at = excluded.heartbeat_at, script_set = excluded.script_set,
                         consumer = excluded.consumer, version = excluded.version"
                ),
                &[
                    &beat.name,
                    &beat.started_at,
                    &beat.script_set,
                    &beat.consumer,
                    &env!("CARGO_PKG_VERSION"),
                ],
            )?;
            if beat.consumer {
                // The role is one lock: a node still listed as the consumer lost it (killed, cut
                // off) and has not said so.
                tx.execute(
                    "UPDATE herald_nodes SET consumer = false WHERE name <> $1 AND consumer",
                    &[&beat.name],
                )?;
            }
            Ok(())
        })
    }

    fn nodes(&self) -> Result<Vec<NodeStatus>> {
        let rows = self.client()?.query(
            &format!(
                "SELECT name, started_at, heartbeat_at, script_set, consumer, version,
                        {DB_NOW_MS} - heartbeat_at
                 FROM herald_nodes ORDER BY heartbeat_at DESC, name"
            ),
            &[],
        )?;
        Ok(rows.iter().map(node_from_row).collect())
    }

    fn forget_nodes_older_than(&self, cutoff: i64) -> Result<usize> {
        self.write(|tx| {
            Ok(tx.execute(
                "DELETE FROM herald_nodes WHERE heartbeat_at < $1",
                &[&cutoff],
            )? as usize)
        })
    }

    fn hold_presence(&self) -> Result<()> {
        let mut presence = self.presence().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = presence.as_mut() {
            if Client::simple_query(client, "").is_ok() {
                return Ok(());
            }
            tracing::warn!("lost this process's presence connection; taking it again");
            *presence = None;
        }
        let mut client = lock_connection(self, "herald presence")?;
        // Only this process takes its key; another holds it for a moment when it looks whether
        // this one is gone, hence a wait rather than a try.
        Client::execute(
            &mut client,
            "SELECT pg_advisory_lock($1)",
            &[&presence_lock(self.schema(), self.node())],
        )?;
        *presence = Some(client);
        Ok(())
    }

    fn release_leases_of_departed(&self) -> Result<usize> {
        let now = crate::clock::now_ms();
        // The processes holding leases, by a loose scan of the leases' index: one seek per hook
        // and holder, where reading every lease (and the dead entries of leases recorded since the
        // last vacuum) took 75 ms a call with 1,000,000 deliveries waiting. A holder whose leases
        // have all run out is found too; its look below changes nothing.
        let holders: Vec<String> = self
            .client()?
            .query(
                "WITH RECURSIVE held AS (
                     (SELECT hook_id, leased_by FROM herald_deliveries
                      WHERE status = 'delivering' AND leased_by IS NOT NULL
                      ORDER BY hook_id, leased_by LIMIT 1)
                     UNION ALL
                     SELECT next.hook_id, next.leased_by FROM held CROSS JOIN LATERAL (
                         SELECT d.hook_id, d.leased_by FROM herald_deliveries d
                         WHERE d.status = 'delivering' AND d.leased_by IS NOT NULL
                           AND (d.hook_id, d.leased_by) > (held.hook_id, held.leased_by)
                         ORDER BY d.hook_id, d.leased_by LIMIT 1
                     ) next
                 )
                 SELECT DISTINCT leased_by FROM held WHERE leased_by <> $1",
                &[&self.node()],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut released = 0;
        for holder in holders {
            let key = presence_lock(self.schema(), &holder);
            let n = self.write(|tx| {
                // Free only if the process that held it is gone; held for this transaction, so
                // that a process of that name cannot come and lease meanwhile.
                let gone: bool = tx
                    .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&key])?
                    .get(0);
                if !gone {
                    return Ok(0);
                }
                let n = tx.execute(
                    "UPDATE herald_deliveries SET next_attempt_at = $2, updated_at = $2
                     WHERE status = 'delivering' AND leased_by = $1 AND next_attempt_at > $2",
                    &[&holder, &now],
                )? as usize;
                if n > 0 {
                    deliveries_waiting(tx, self.schema())?;
                }
                Ok(n)
            })?;
            if n > 0 {
                tracing::info!(
                    process = holder,
                    deliveries = n,
                    "released the leases of a herald process that is gone"
                );
            }
            released += n;
        }
        Ok(released)
    }

    fn consumer_role(&self) -> Result<Box<dyn ConsumerRole>> {
        Ok(Box::new(AdvisoryLock {
            store: self.clone(),
            key: consumer_lock(self.schema()),
            client: None,
            held: false,
            tried_at: None,
        }))
    }
}

/// The consumer's role as an advisory lock held by a connection of its own.
struct AdvisoryLock {
    store: Postgres,
    key: i64,
    client: Option<PgConn>,
    held: bool,
    tried_at: Option<Instant>,
}

/// A held lock whose connection answered this recently is not asked again: the tracker asks
/// before every batch, and at a thousand changes a second that is a round trip every few
/// milliseconds on the consumer's critical path. Losing the role is noticed this much later at
/// most; consuming after it was lost stores nothing twice (a change is deleted by the transaction
/// that stores its events, so a second consumer's transaction finds it gone and stores nothing).
const LOCK_TRUSTED_FOR: Duration = Duration::from_millis(200);

impl AdvisoryLock {
    fn connect(&self) -> Result<PgConn> {
        // A node whose machine vanished hands the role on within the keepalives (its own end needs
        // no help: the tracker asks before every batch).
        lock_connection(&self.store, "herald consumer lock")
    }

    /// Forgets the connection (and with it the lock) after a failure.
    fn lost(&mut self, error: StoreError) -> Result<bool> {
        if self.held {
            tracing::warn!("lost the change log consumer's role: {error}");
        }
        self.held = false;
        self.client = None;
        Err(error)
    }
}

impl ConsumerRole for AdvisoryLock {
    fn holds(&mut self) -> Result<bool> {
        if self.held {
            // Still ours while its connection answers.
            let client = self.client.as_mut().expect("held on a connection");
            return match client.check_alive(LOCK_TRUSTED_FOR) {
                Ok(()) => Ok(true),
                Err(e) => self.lost(StoreError::Connect(format!(
                    "the consumer lock's connection: {}",
                    describe(&e)
                ))),
            };
        }
        if self
            .tried_at
            .is_some_and(|at| at.elapsed() < self.store.takeover().try_every)
        {
            return Ok(false);
        }
        self.tried_at = Some(Instant::now());
        if self.client.is_none() {
            match self.connect() {
                Ok(client) => self.client = Some(client),
                Err(e) => return self.lost(e),
            }
        }
        let client = self.client.as_mut().expect("connected above");
        let taken = client.query_one("SELECT pg_try_advisory_lock($1)", &[&self.key]);
        match taken {
            Ok(row) => {
                self.held = row.get(0);
                if self.held {
                    tracing::info!("this node now consumes the change log");
                }
                Ok(self.held)
            }
            Err(e) => self.lost(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_takeover_fits_its_budget_whatever_the_budget() {
        for secs in crate::config::TAKEOVER_SECONDS {
            let budget = Duration::from_secs(secs);
            let takeover = Takeover::within(budget);
            assert!(takeover.longest() <= budget, "{secs} s: {takeover:?}");
            // Not needlessly quick either: most of the budget goes to the keepalives, so that a
            // busy network does not cost the consumer its role.
            assert!(
                takeover.longest() + Duration::from_secs(2) >= budget,
                "{secs} s: {takeover:?}"
            );
            assert!(takeover.keepalive_idle_secs >= 1 && takeover.keepalive_interval_secs >= 1);
        }
        assert_eq!(
            Takeover::within(Duration::from_secs(6)),
            Takeover {
                try_every: Duration::from_secs(1),
                keepalive_idle_secs: 3,
                keepalive_interval_secs: 1,
                keepalive_count: 2,
            }
        );
    }
}
