//! This process as one node of its database: its name, when it started, whether it consumes the
//! change log now, and the heartbeat that tells the other nodes (and the API, the pages and the
//! metrics) so. On SQLite it is the one node; on PostgreSQL several may share the database.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::scripts::ScriptRegistry;
use crate::store::{NodeBeat, Store};

/// How often a node beats.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// A node whose last heartbeat is older than this is shown as gone.
pub const GONE_AFTER: Duration = Duration::from_secs(10);

/// Nodes silent for this long are forgotten (by the consumer).
const FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);

pub struct Node {
    pub name: String,
    pub started_at: i64,
    /// Set by the tracker while this node holds the consumer's role.
    pub consumer: Arc<AtomicBool>,
}

impl Node {
    pub fn new(name: String) -> Node {
        Node {
            name,
            started_at: crate::clock::now_ms(),
            consumer: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn is_consumer(&self) -> bool {
        self.consumer.load(Ordering::SeqCst)
    }

    fn beat(&self, registry: &ScriptRegistry) -> NodeBeat {
        NodeBeat {
            name: self.name.clone(),
            started_at: self.started_at,
            script_set: registry.current().fingerprint(),
            consumer: self.is_consumer(),
        }
    }
}

/// The name a node goes by unless `node_name` says otherwise: the host's name and the port it
/// listens on, so that two processes on one machine differ.
pub fn default_name(listening: SocketAddr) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "herald".into());
    format!("{host}:{}", listening.port())
}

/// Beats every `HEARTBEAT_EVERY` until `shutdown`.
pub async fn heartbeat(
    store: Store,
    node: Arc<Node>,
    registry: Arc<ScriptRegistry>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let beat = node.beat(&registry);
        let consumer = beat.consumer;
        let store_now = store.clone();
        let beaten = tokio::task::spawn_blocking(move || {
            store_now.hold_presence()?;
            store_now.heartbeat(&beat)?;
            if consumer {
                // What a dead node had leased is sent again now, not when its leases run out.
                store_now.release_leases_of_departed()?;
                let cutoff = crate::clock::now_ms() - FORGET_AFTER.as_millis() as i64;
                store_now.forget_nodes_older_than(cutoff)?;
            }
            Ok::<_, crate::store::StoreError>(())
        })
        .await;
        match beaten {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!("heartbeat not recorded: {e}"),
            Err(e) => tracing::warn!("heartbeat task failed: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(HEARTBEAT_EVERY) => {}
            _ = shutdown.changed() => break,
        }
    }
    // A node that stops says it no longer consumes (its lock goes with its connection), so that
    // the list does not show two consumers until the next one beats.
    let last = NodeBeat {
        consumer: false,
        ..node.beat(&registry)
    };
    let _ = tokio::task::spawn_blocking(move || store.heartbeat(&last)).await;
}
