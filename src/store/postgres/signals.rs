//! Wake-ups between processes: a herald that stores deliveries it does not lease (an event fired
//! by `herald fire`, a retry asked through the API, deliveries handed back) says so with `NOTIFY`,
//! and every herald on the database listens, so that its worker claims at once instead of at its
//! next look (within a second).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;

use super::connection::{Queries, Tx};
use super::{quote_ident, Postgres, Result};

/// How long one wait for a notification lasts, so that a stop is seen.
const WAIT_SLICE: Duration = Duration::from_millis(250);

/// After a lost connection, the listener tries again this often.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);

/// The channel of deliveries that wait for a claim.
pub(super) fn deliveries_channel(schema: &str) -> String {
    format!("{schema}_deliveries")
}

/// Tells the processes listening that deliveries wait (sent when the transaction commits;
/// several in one transaction are one).
pub(super) fn deliveries_waiting(tx: &mut Tx<'_>, schema: &str) -> Result<()> {
    tx.execute("SELECT pg_notify($1, '')", &[&deliveries_channel(schema)])?;
    Ok(())
}

/// Listens on a connection of its own until `stop`, calling `wake` for every notification.
pub(super) fn listen(
    store: Postgres,
    wake: Box<dyn Fn() + Send>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("herald-pg-listen".into())
        .spawn(move || {
            let channel = quote_ident(&deliveries_channel(store.schema()));
            while !stop.load(Ordering::Relaxed) {
                let listened = (|| -> Result<()> {
                    let mut client = store.dedicated_client()?;
                    client.batch_execute(&format!("LISTEN {channel}"))?;
                    // What was stored while no one listened is claimed at the worker's next look.
                    while !stop.load(Ordering::Relaxed) {
                        let mut notifications = client.notifications();
                        if notifications.timeout_iter(WAIT_SLICE).next()?.is_some() {
                            while notifications.iter().next()?.is_some() {}
                            wake();
                        }
                    }
                    Ok(())
                })();
                if let Err(e) = listened {
                    tracing::debug!("listening for deliveries: {e}; again in a second");
                    std::thread::sleep(RECONNECT_EVERY);
                }
            }
        })
}
