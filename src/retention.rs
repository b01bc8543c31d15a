//! The retention window: events older than `retention.days` (28 by default, as in the Procore pages
//! administrators know) go, with their deliveries and attempts, once their deliveries are final.
//!
//! The clean-up runs every `retention.interval_secs` in batches of a few hundred events, each batch
//! its own short transaction with a pause between, so that neither the delivery worker nor the
//! application's writers wait behind it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::now_ms;
use crate::config::RetentionSettings;
use crate::store::Store;

const BATCH: usize = 500;
const PAUSE: Duration = Duration::from_millis(20);

/// Deletes everything older than the window, batch by batch; returns how many events went.
pub async fn purge_once(store: &Store, settings: &RetentionSettings) -> anyhow::Result<usize> {
    let cutoff = now_ms() - settings.max_age.as_millis() as i64;
    let mut total = 0;
    loop {
        let store = store.clone();
        let purged =
            tokio::task::spawn_blocking(move || store.purge_before(cutoff, BATCH)).await??;
        total += purged;
        if purged < BATCH {
            return Ok(total);
        }
        tokio::time::sleep(PAUSE).await;
    }
}

/// Runs the clean-up at start and then every interval, until `shutdown` says so; only while this
/// node is the change log's consumer (`consumer`), so that several nodes do not purge together.
pub async fn run(
    store: Store,
    settings: RetentionSettings,
    consumer: Arc<AtomicBool>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if !consumer.load(Ordering::SeqCst) {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                _ = shutdown.changed() => return,
            }
        }
        match purge_once(&store, &settings).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(
                purged,
                days = settings.max_age.as_secs_f64() / 86_400.0,
                "events older than the retention window deleted"
            ),
            Err(e) => tracing::warn!("retention clean-up failed: {e}; trying again next time"),
        }
        tokio::select! {
            _ = tokio::time::sleep(settings.interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}
