//! herald: a webhook trigger runtime for applications whose data lives in SQLite.
//!
//! # Layout
//!
//! Data flows one way through the modules:
//!
//! change ([`tracking`]) -> notification script ([`scripts`]) -> trigger -> body script ([`events`])
//! -> outbox ([`store`]) -> delivery worker ([`delivery`]) -> attempt log ([`store`]).
//!
//! - [`config`]: settings from flags, environment variables and an optional TOML file.
//! - [`database`]: where the data lives: an SQLite file or a PostgreSQL URL (shown without password).
//! - [`store`]: the only module that speaks SQL; migrations, the change log, hooks, the outbox.
//! - [`scripts`]: the sandboxed rhai engine, the script registry, diagnostics with file, line and column.
//! - [`reload`]: watches the scripts folder and swaps in the new scripts when a file changes.
//! - [`tracking`]: consumes the change log in commit order and turns changes into events.
//! - [`events`]: renders an event's payload with its body script.
//! - [`delivery`]: claims due deliveries, signs and POSTs them, records every attempt, schedules retries.
//! - [`retention`]: deletes events older than the retention window, in small batches.
//! - [`metrics`]: counters of the work done and gauges of the outbox, for `GET /metrics`.
//! - [`node`]: this process as a node of its database: its name, heartbeat, and consumer's role.
//! - [`http`]: the REST hooks endpoints, health endpoints, authentication and the JSON error shape.
//! - [`server`]: the composition root that starts all of the above and stops them on shutdown.
//! - [`commands`]: `herald check`, `herald fire` and `herald sample`, the command-line tools beside `serve`.

pub mod backfill;
pub mod backoff;
pub mod clock;
pub mod commands;
pub mod config;
pub mod database;
pub mod delivery;
pub mod events;
pub mod filters;
pub mod http;
pub mod ids;
pub mod metrics;
pub mod node;
pub mod reload;
pub mod retention;
pub mod scripts;
pub mod server;
pub mod store;
pub mod tracking;

pub use config::Config;
pub use server::serve;
