//! The composition root: opens the database, loads the scripts, and runs the tracker, the delivery
//! worker and the HTTP API until shutdown.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

use crate::config::{ApiToken, Config, Role};
use crate::database::Database;
use crate::delivery::{TargetPolicy, Worker};
use crate::http::{router, AppState, Sessions};
use crate::metrics::Metrics;
use crate::node::Node;
use crate::reload::ScriptWatcher;
use crate::scripts::{Sandbox, SandboxPool, ScriptRegistry, ScriptSet};
use crate::store::{Secrets, Store};
use crate::tracking::{Renderer, Tracker, TrackerPulse};

/// The database, migrated, with the application's schema applied and the tracking triggers in place,
/// and the scripts compiled. Script errors are logged; the scripts that compiled are live.
pub fn prepare(config: &Config) -> anyhow::Result<(Store, ScriptSet)> {
    let store = open_store(config)?;
    let scripts = ScriptSet::load(&config.scripts, &config.sandbox).with_context(|| {
        format!(
            "cannot read the scripts folder {}",
            config.scripts.display()
        )
    })?;
    for diagnostic in &scripts.diagnostics {
        tracing::error!("{diagnostic}");
    }
    let schema_file = config.db.schema_file();
    if let Some(sql) = scripts.schema(schema_file) {
        store.apply_schema(schema_file, sql)?;
    }
    for problem in store.sync_tracking(&scripts.tracked_tables())? {
        tracing::error!(table = %problem.table, "cannot track: {}", problem.message);
    }
    Ok((store, scripts))
}

/// The database with the key that seals hooks' secrets, sealing what is still plain.
pub fn open_store(config: &Config) -> anyhow::Result<Store> {
    let secrets = secrets(config)?;
    let store = Store::open_database(
        &config.db,
        &config.postgres,
        secrets,
        config.sandbox.time_budget,
    )
    .with_context(|| format!("cannot open the database {}", config.db))?;
    let sealed = store
        .seal_plain_secrets()
        .context("cannot seal the hooks' secrets")?;
    if sealed > 0 {
        tracing::info!(hooks = sealed, "hooks' secrets sealed at rest");
    }
    Ok(store)
}

/// The key from `HERALD_SECRET_KEY`, or from the key file (generated on first start, mode 0600).
fn secrets(config: &Config) -> anyhow::Result<Secrets> {
    if let Some(key) = &config.secret_key {
        return Secrets::from_base64(key).context("HERALD_SECRET_KEY");
    }
    let path = config
        .secret_key_file
        .clone()
        .unwrap_or_else(|| config.db.companion_file("secret-key"));
    match std::fs::read_to_string(&path) {
        Ok(key) => {
            Secrets::from_base64(&key).with_context(|| format!("the key file {}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Secrets::generate_key();
            write_private(&path, &key)
                .with_context(|| format!("cannot write the key file {}", path.display()))?;
            tracing::info!(path = %path.display(), "key for secrets at rest generated; back it up apart from the database");
            Ok(Secrets::from_base64(&key)?)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read the key file {}", path.display())),
    }
}

/// Where the generated API token is kept: beside an SQLite file, in the working directory for
/// PostgreSQL.
pub fn token_file(db: &Database) -> PathBuf {
    db.companion_file("api-token")
}

/// The configured token, or the one kept beside the database (generated on first start).
pub fn api_token(config: &Config) -> anyhow::Result<String> {
    if let Some(token) = &config.api_token {
        return Ok(token.clone());
    }
    let path = token_file(&config.db);
    if let Ok(token) = std::fs::read_to_string(&path) {
        if !token.trim().is_empty() {
            tracing::info!(path = %path.display(), "API token read from file");
            return Ok(token.trim().to_owned());
        }
    }
    let mut bytes = [0u8; 24];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    write_private(&path, &token)
        .with_context(|| format!("cannot write the API token to {}", path.display()))?;
    tracing::info!(path = %path.display(), "API token generated and stored");
    Ok(token)
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}

/// Runs herald on `listener` until `shutdown` completes, then stops taking requests, lets attempts in
/// flight finish (within the delivery time-out) and returns.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let prepared_config = config.clone();
    let (store, scripts) = tokio::task::spawn_blocking(move || {
        let (store, scripts) = prepare(&prepared_config)?;
        // Before the worker leases anything: its leases are live while the presence is held.
        store
            .hold_presence()
            .context("cannot hold this process's presence in the database")?;
        anyhow::Ok((store, scripts))
    })
    .await??;
    let mut tokens = vec![ApiToken {
        name: "default".into(),
        token: api_token(&config)?,
        role: Role::Admin,
    }];
    tokens.extend(config.api_tokens.iter().cloned());
    let registry = Arc::new(ScriptRegistry::new(scripts));
    let node = Arc::new(Node::new(config.node_name.clone().unwrap_or_else(|| {
        crate::node::default_name(
            listener
                .local_addr()
                .unwrap_or_else(|_| ([0, 0, 0, 0], 0).into()),
        )
    })));
    let watcher = if config.watch_scripts {
        Some(
            ScriptWatcher::start(
                registry.clone(),
                store.clone(),
                config.sandbox.clone(),
                node.consumer.clone(),
            )
            .context("cannot watch the scripts folder")?,
        )
    } else {
        None
    };
    let deliveries_waiting = Arc::new(Notify::new());
    let metrics = Metrics::new();

    let worker_alive = Arc::new(AtomicBool::new(false));
    let (stop_worker, worker_shutdown) = watch::channel(false);
    let worker = Worker::new(
        store.clone(),
        config.delivery.clone(),
        deliveries_waiting.clone(),
        metrics.clone(),
    );
    let capacity = worker.capacity();

    let tracker_pulse = TrackerPulse::new(config.sandbox.time_budget);
    let stop_tracking = Arc::new(AtomicBool::new(false));
    let renderers = (0..config.render_threads())
        .map(|_| {
            Ok(Renderer::new(
                Sandbox::new(&config.sandbox, store.script_db()?),
                store.script_db()?,
                tracker_pulse.clone(),
            ))
        })
        .collect::<Result<Vec<_>, crate::store::StoreError>>()?;
    let tracker = Tracker::new(
        store.clone(),
        registry.clone(),
        node.consumer.clone(),
        renderers,
        config.tracking.clone(),
        worker.handoff(),
        deliveries_waiting.clone(),
        metrics.clone(),
    )?;
    let tracker_thread = tracker.spawn(stop_tracking.clone(), tracker_pulse.clone())?;

    // Deliveries stored by another process (PostgreSQL only) wake the worker at once.
    let stop_listening = Arc::new(AtomicBool::new(false));
    let deliveries_listener = {
        let waiting = deliveries_waiting.clone();
        store.listen_for_deliveries(
            Box::new(move || waiting.notify_one()),
            stop_listening.clone(),
        )?
    };
    let checkpoint_task = tokio::spawn(checkpoint_wal(store.clone(), worker_shutdown.clone()));
    let retention_task = tokio::spawn(crate::retention::run(
        store.clone(),
        config.retention.clone(),
        node.consumer.clone(),
        worker_shutdown.clone(),
    ));
    let backfill_task = tokio::spawn(crate::backfill::run(
        store.clone(),
        registry.clone(),
        config.sandbox.clone(),
        node.consumer.clone(),
        worker_shutdown.clone(),
    ));
    let heartbeat_task = tokio::spawn(crate::node::heartbeat(
        store.clone(),
        node.clone(),
        registry.clone(),
        worker_shutdown.clone(),
    ));
    let worker_task = tokio::spawn(worker.run(worker_shutdown, worker_alive.clone()));

    let state = AppState {
        sandboxes: Arc::new(SandboxPool::new(store.clone(), config.sandbox.clone())),
        targets: Arc::new(TargetPolicy::of(&config.delivery)),
        sessions: Arc::new(Sessions::new(store.clone())),
        store,
        registry,
        tokens: Arc::new(tokens),
        node,
        tracker: tracker_pulse,
        worker_alive,
        deliveries_waiting,
        metrics,
        delivery_timeout: config.delivery.timeout,
        capacity,
        token_file: token_file(&config.db)
            .file_name()
            .map_or_else(|| "herald.api-token".into(), |n| n.to_string_lossy().into()),
        rate_limits: Arc::new(crate::http::RateLimits::new(
            config.rate_limit,
            config.trusted_proxies.clone(),
        )),
    };
    tracing::info!(address = %listener.local_addr()?, "herald listening");
    // The peer's address keys the limit on failed sign-ins.
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    tracing::info!("shutting down: finishing deliveries in flight");
    drop(watcher);
    // The tracker first: once it has stopped, nothing more is handed to the worker, which then
    // hands back what it holds unsent.
    stop_tracking.store(true, Ordering::SeqCst);
    let tracker_joined = tokio::task::spawn_blocking(move || tracker_thread.join()).await?;
    let _ = stop_worker.send(true);
    if let Err(e) = worker_task.await {
        tracing::error!("delivery worker ended abnormally: {e}");
    }
    let _ = retention_task.await;
    let _ = backfill_task.await;
    let _ = checkpoint_task.await;
    let _ = heartbeat_task.await;
    stop_listening.store(true, Ordering::SeqCst);
    if let Some(listening) = deliveries_listener {
        let _ = tokio::task::spawn_blocking(move || listening.join()).await;
    }
    tracker_joined.map_err(|_| anyhow::anyhow!("the tracking thread panicked"))?;
    tracing::info!("herald stopped");
    served.context("the HTTP server failed")
}

/// Keeps the WAL small with a passive checkpoint every half second, off the paths events take,
/// and makes it start over when a steady load kept it growing (see `Store::checkpoint`).
async fn checkpoint_wal(store: Store, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
            _ = shutdown.changed() => return,
        }
        let store = store.clone();
        match tokio::task::spawn_blocking(move || store.maintain()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!("WAL checkpoint skipped: {e}"),
            Err(e) => tracing::warn!("WAL checkpoint task failed: {e}"),
        }
    }
}
