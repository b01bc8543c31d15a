//! Operational metrics, served at `GET /metrics` in the Prometheus text format.
//!
//! Counters and the latency histogram are kept in memory by the parts that do the work (the tracker,
//! the delivery worker); the gauges that describe the outbox are read from the database at each
//! scrape, so they are true for every process that shares it. `prometheus-client` (the Prometheus
//! project's Rust client) does the encoding.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::store::OutboxSnapshot;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabel {
    /// A trigger name or a resource event (`Deal.update`).
    pub event: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// success, http_error, timeout, connection_error or refused.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScriptLabel {
    pub script: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallerLabel {
    /// The token's name (`default` for HERALD_API_TOKEN), or `admin pages session`.
    pub caller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HookStateLabel {
    /// enabled, disabled, or failing (enabled, with deliveries waiting for a retry).
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HookLabel {
    /// The hook's id.
    pub hook: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabel {
    /// The node's `node_name`.
    pub node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeScriptsLabel {
    pub node: String,
    /// The fingerprint of the node's scripts folder (nodes whose folders differ differ here).
    pub script_set: String,
}

/// The nodes of the database as a scrape shows them (read from the database at each scrape).
pub struct ClusterView<'a> {
    /// The node answering the scrape.
    pub this_node: &'a str,
    /// Its script set now.
    pub this_script_set: &'a str,
    pub nodes: &'a [crate::store::NodeStatus],
    /// A node whose heartbeat is older than this is counted gone.
    pub gone_after_ms: i64,
}

pub struct Metrics {
    registry: Registry,
    changes_consumed: Counter,
    events_fired: Family<EventLabel, Counter>,
    attempts: Family<OutcomeLabel, Counter>,
    attempt_seconds: Histogram,
    script_errors: Family<ScriptLabel, Counter>,
    waiting: Gauge,
    oldest_waiting_seconds: Gauge<f64, AtomicU64>,
    changes_waiting: Gauge,
    oldest_change_seconds: Gauge<f64, AtomicU64>,
    hooks: Family<HookStateLabel, Gauge>,
    filtered_out: Family<HookLabel, Gauge>,
    hook_failure_warnings: Counter,
    hooks_auto_disabled: Counter,
    deliveries_handed_back: Counter,
    rate_limited: Family<CallerLabel, Counter>,
    node_up: Family<NodeScriptsLabel, Gauge>,
    node_consumer: Family<NodeLabel, Gauge>,
    node_heartbeat_age: Family<NodeLabel, Gauge<f64, AtomicU64>>,
    this_node: Family<NodeScriptsLabel, Gauge>,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("herald");
        let changes_consumed = Counter::default();
        registry.register(
            "changes_consumed",
            "Changes of tracked tables consumed from the change log",
            changes_consumed.clone(),
        );
        let events_fired = Family::<EventLabel, Counter>::default();
        registry.register(
            "events_fired",
            "Events fired, by trigger or resource event",
            events_fired.clone(),
        );
        let attempts = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "delivery_attempts",
            "Delivery attempts finished, by outcome",
            attempts.clone(),
        );
        let attempt_seconds = Histogram::new(exponential_buckets(0.005, 2.0, 13));
        registry.register(
            "delivery_attempt_duration_seconds",
            "Time from sending a delivery to the end of its response",
            attempt_seconds.clone(),
        );
        let script_errors = Family::<ScriptLabel, Counter>::default();
        registry.register(
            "script_errors",
            "Script runs that failed (compile errors are in /api/v1/scripts), by script",
            script_errors.clone(),
        );
        let waiting = Gauge::default();
        registry.register(
            "deliveries_waiting",
            "Deliveries not yet final: pending, in flight or waiting for a retry",
            waiting.clone(),
        );
        let oldest_waiting_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "oldest_waiting_delivery_age_seconds",
            "Age of the oldest delivery not yet final (0 when none)",
            oldest_waiting_seconds.clone(),
        );
        let changes_waiting = Gauge::default();
        registry.register(
            "changes_waiting",
            "Changes of tracked tables logged and not yet consumed: how far behind the change log's consumer is",
            changes_waiting.clone(),
        );
        let oldest_change_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "oldest_waiting_change_age_seconds",
            "Age of the oldest change not yet consumed (0 when none)",
            oldest_change_seconds.clone(),
        );
        let hooks = Family::<HookStateLabel, Gauge>::default();
        registry.register("hooks", "Hooks, by state", hooks.clone());
        let filtered_out = Family::<HookLabel, Gauge>::default();
        registry.register(
            "hook_events_filtered_out",
            "Events a hook's filter kept from it since the hook was made, by hook (hooks whose filter kept any)",
            filtered_out.clone(),
        );
        let hook_failure_warnings = Counter::default();
        registry.register(
            "hook_failure_warnings",
            "Hooks warned about: every attempt failed for half the disabling window",
            hook_failure_warnings.clone(),
        );
        let hooks_auto_disabled = Counter::default();
        registry.register(
            "hooks_auto_disabled",
            "Hooks disabled because every attempt failed for the whole window",
            hooks_auto_disabled.clone(),
        );
        let deliveries_handed_back = Counter::default();
        registry.register(
            "deliveries_handed_back",
            "Claimed deliveries handed back to the outbox unsent because their hook had no free slot for a whole delivery time-out",
            deliveries_handed_back.clone(),
        );
        let rate_limited = Family::<CallerLabel, Counter>::default();
        registry.register(
            "api_rate_limited",
            "API requests refused with 429 because their token was over its rate, by token name",
            rate_limited.clone(),
        );
        let node_up = Family::<NodeScriptsLabel, Gauge>::default();
        registry.register(
            "node_up",
            "herald processes of this database: 1 while the node beats, 0 once it has been silent for 10 s, by node and script set",
            node_up.clone(),
        );
        let node_consumer = Family::<NodeLabel, Gauge>::default();
        registry.register(
            "node_consumer",
            "1 for the node that consumes the change log (one at a time), 0 for the others",
            node_consumer.clone(),
        );
        let node_heartbeat_age = Family::<NodeLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "node_heartbeat_age_seconds",
            "Time since each node's last heartbeat",
            node_heartbeat_age.clone(),
        );
        let this_node = Family::<NodeScriptsLabel, Gauge>::default();
        registry.register(
            "this_node",
            "Always 1: the node that answered this scrape, and its script set",
            this_node.clone(),
        );
        Arc::new(Metrics {
            registry,
            changes_consumed,
            events_fired,
            attempts,
            attempt_seconds,
            script_errors,
            waiting,
            oldest_waiting_seconds,
            changes_waiting,
            oldest_change_seconds,
            hooks,
            filtered_out,
            hook_failure_warnings,
            hooks_auto_disabled,
            deliveries_handed_back,
            rate_limited,
            node_up,
            node_consumer,
            node_heartbeat_age,
            this_node,
        })
    }

    pub fn changes_consumed(&self, count: usize) {
        self.changes_consumed.inc_by(count as u64);
    }

    pub fn event_fired(&self, event: &str) {
        self.events_fired
            .get_or_create(&EventLabel {
                event: event.to_owned(),
            })
            .inc();
    }

    pub fn script_failed(&self, script: &str) {
        self.script_errors
            .get_or_create(&ScriptLabel {
                script: script.to_owned(),
            })
            .inc();
    }

    pub fn attempt_finished(&self, outcome: &str, duration_ms: i64) {
        self.attempts
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_owned(),
            })
            .inc();
        self.attempt_seconds
            .observe(duration_ms.max(0) as f64 / 1000.0);
    }

    pub fn hook_failure_warned(&self) {
        self.hook_failure_warnings.inc();
    }

    pub fn hook_disabled(&self) {
        self.hooks_auto_disabled.inc();
    }

    pub fn deliveries_handed_back(&self, count: usize) {
        self.deliveries_handed_back.inc_by(count as u64);
    }

    pub fn rate_limited(&self, caller: &str) {
        self.rate_limited
            .get_or_create(&CallerLabel {
                caller: caller.to_owned(),
            })
            .inc();
    }

    /// The text exposition, with the outbox gauges set from `snapshot` and the nodes' from
    /// `cluster`.
    pub fn render(
        &self,
        snapshot: &OutboxSnapshot,
        cluster: &ClusterView<'_>,
        now_ms: i64,
    ) -> String {
        self.set_nodes(cluster);
        self.waiting.set(snapshot.waiting as i64);
        self.oldest_waiting_seconds.set(
            snapshot
                .oldest_waiting_created_at
                .map_or(0.0, |at| (now_ms - at).max(0) as f64 / 1000.0),
        );
        self.changes_waiting.set(snapshot.changes_waiting as i64);
        self.oldest_change_seconds.set(
            snapshot
                .oldest_change_at
                .map_or(0.0, |at| (now_ms - at).max(0) as f64 / 1000.0),
        );
        for (state, count) in [
            ("enabled", snapshot.hooks_enabled),
            ("disabled", snapshot.hooks_disabled),
            ("failing", snapshot.hooks_failing),
        ] {
            self.hooks
                .get_or_create(&HookStateLabel {
                    state: state.to_owned(),
                })
                .set(count as i64);
        }
        // Deleted hooks leave the family with the database's list.
        self.filtered_out.clear();
        for (hook, count) in &snapshot.filtered_out {
            self.filtered_out
                .get_or_create(&HookLabel { hook: hook.clone() })
                .set(*count as i64);
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String does not fail");
        text
    }

    fn set_nodes(&self, cluster: &ClusterView<'_>) {
        // Forgotten nodes leave the families with the database's list.
        self.node_up.clear();
        self.node_consumer.clear();
        self.node_heartbeat_age.clear();
        self.this_node.clear();
        for node in cluster.nodes {
            let up = node.heartbeat_age_ms < cluster.gone_after_ms;
            let named = NodeLabel {
                node: node.name.clone(),
            };
            self.node_up
                .get_or_create(&NodeScriptsLabel {
                    node: node.name.clone(),
                    script_set: node.script_set.clone(),
                })
                .set(up.into());
            self.node_consumer
                .get_or_create(&named)
                .set((up && node.consumer).into());
            self.node_heartbeat_age
                .get_or_create(&named)
                .set(node.heartbeat_age_ms as f64 / 1000.0);
        }
        self.this_node
            .get_or_create(&NodeScriptsLabel {
                node: cluster.this_node.to_owned(),
                script_set: cluster.this_script_set.to_owned(),
            })
            .set(1);
    }
}
