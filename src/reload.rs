//! Hot reload: watches the scripts folder and swaps in a new [`ScriptSet`] when a file changes.
//!
//! The folder is watched, not the files: editors save by writing a temporary file and renaming it
//! over the old one, which a watch on the file itself would lose. Events are debounced (a save is
//! several events) and the whole folder is loaded again; unchanged files keep their compiled AST and a
//! file that no longer compiles keeps its working version (see [`ScriptSet::reload`]).
//!
//! The new set is published before the tracking triggers change, so the tracker never sees a change
//! of a newly tracked table while it still holds a set without that table's notification script.

use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::{RecommendedWatcher, RecursiveMode, Watcher};

use crate::config::SandboxLimits;
use crate::scripts::{ScriptRegistry, ScriptSet, SCHEMA_FILES};
use crate::store::Store;

/// Quiet time after the last file event before the folder is loaded again.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// A folder that never goes quiet is still reloaded this often.
const MAX_DELAY: Duration = Duration::from_millis(500);

/// Watches the folder until dropped.
pub struct ScriptWatcher {
    // Dropping the watcher closes the channel, which ends the thread.
    watcher: Option<RecommendedWatcher>,
    thread: Option<JoinHandle<()>>,
}

impl ScriptWatcher {
    /// `consumer`: whether this node consumes the change log; only the consumer brings the
    /// tracking triggers in line with its scripts (nodes with other scripts would undo each other).
    pub fn start(
        registry: Arc<ScriptRegistry>,
        store: Store,
        limits: SandboxLimits,
        consumer: Arc<std::sync::atomic::AtomicBool>,
    ) -> notify::Result<ScriptWatcher> {
        let folder = registry.current().folder.clone();
        let (sender, events) = channel();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let _ = sender.send(event);
            })?;
        watcher.watch(&folder, RecursiveMode::NonRecursive)?;
        tracing::info!(folder = %folder.display(), "watching the scripts folder for changes");
        let thread = std::thread::Builder::new()
            .name("herald-reload".into())
            .spawn(move || {
                let reloader = Reloader {
                    registry,
                    store,
                    limits,
                    consumer,
                };
                reloader.run(&events)
            })?;
        Ok(ScriptWatcher {
            watcher: Some(watcher),
            thread: Some(thread),
        })
    }
}

impl Drop for ScriptWatcher {
    fn drop(&mut self) {
        drop(self.watcher.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Reloader {
    registry: Arc<ScriptRegistry>,
    store: Store,
    limits: SandboxLimits,
    consumer: Arc<std::sync::atomic::AtomicBool>,
}

impl Reloader {
    fn run(&self, events: &Receiver<notify::Result<notify::Event>>) {
        while let Ok(first) = events.recv() {
            let mut relevant = is_relevant(&first);
            let started = Instant::now();
            loop {
                let wait = DEBOUNCE.min(MAX_DELAY.saturating_sub(started.elapsed()));
                match events.recv_timeout(wait) {
                    Ok(event) => relevant |= is_relevant(&event),
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
                if started.elapsed() >= MAX_DELAY {
                    break;
                }
            }
            if relevant {
                self.reload();
            }
        }
    }

    /// Loads the folder again, publishes the result and brings the tracking triggers in line.
    fn reload(&self) {
        let old = self.registry.current();
        let new = match old.reload(&self.limits) {
            Ok(new) => new,
            Err(e) => {
                tracing::error!(folder = %old.folder.display(), "cannot read the scripts folder: {e}; the scripts stay as they were");
                return;
            }
        };
        log_differences(&old, &new);
        let tables_changed = old.tracked_tables() != new.tracked_tables();
        let tables = new.tracked_tables();
        self.registry.replace(new);
        if tables_changed && self.consumer.load(std::sync::atomic::Ordering::SeqCst) {
            match self.store.sync_tracking(&tables) {
                Ok(problems) => {
                    for problem in problems {
                        tracing::error!(table = %problem.table, "cannot track: {}", problem.message);
                    }
                }
                Err(e) => tracing::error!("cannot update the tracking triggers: {e}"),
            }
        }
    }
}

/// Whether an event may change what the folder holds (reads and our own looks do not).
fn is_relevant(event: &notify::Result<notify::Event>) -> bool {
    match event {
        Ok(event) => !matches!(event.kind, notify::EventKind::Access(_)),
        // A lost event (queue overflow) may have been anything.
        Err(_) => true,
    }
}

fn log_differences(old: &ScriptSet, new: &ScriptSet) {
    for script in new.scripts() {
        match old.by_file(&script.file_name) {
            None => {
                tracing::info!(script = %script.file_name, hash = %script.hash, "script added")
            }
            Some(previous) if previous.hash != script.hash => {
                tracing::info!(script = %script.file_name, hash = %script.hash, previous = %previous.hash, "script reloaded")
            }
            Some(_) => {}
        }
    }
    for script in old.scripts() {
        if new.by_file(&script.file_name).is_none() {
            tracing::info!(script = %script.file_name, "script removed");
        }
    }
    for diagnostic in &new.diagnostics {
        if !old.diagnostics.contains(diagnostic) {
            let kept = new.by_file(&diagnostic.file).is_some();
            tracing::error!(
                "{}{}",
                diagnostic.render(),
                if kept {
                    "\n    (the previous version stays live)"
                } else {
                    ""
                }
            );
        }
    }
    for file in SCHEMA_FILES {
        if old.schema(file) != new.schema(file) {
            tracing::warn!(
                file = %new.folder.join(file).display(),
                "{file} changed: it is applied at start only; restart herald to apply it"
            );
        }
    }
}
