//! `/healthz`: the process answers. `/readyz`: the database answers and takes herald's writes, and
//! the tracker and delivery worker run; a load balancer or an orchestrator sends traffic only while
//! it says ready.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::{blocking, AppState};
use crate::metrics::ClusterView;
use crate::node::GONE_AFTER;

/// The process is up.
#[utoipa::path(get, path = "/healthz", operation_id = "getHealth", description = "Answers 200 while the process runs. Needs no token.", tag = "operations", security(()),
    responses((status = 200, description = "Up", body = Object)))]
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}

/// How long readiness waits for the write lock: an application that holds it longer is holding up
/// herald's work (events cannot be stored, attempts cannot be recorded).
const WRITE_LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// The database answers and takes writes, and the tracker (moving, not stuck in one step) and
/// the delivery worker run.
#[utoipa::path(get, path = "/readyz", operation_id = "getReadiness", description = "200 only while the database answers and takes writes and the tracker and the delivery worker run; 503 with the failing checks otherwise. For load balancers and orchestrators. Needs no token.", tag = "operations", security(()),
    responses(
        (status = 200, description = "Ready", body = Object),
        (status = 503, description = "Not ready, with the failing checks", body = Object),
    ))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let store = state.store.clone();
    let (database, writable, write_problems) = blocking(move || {
        let readable = store.ping().is_ok();
        let problems = store.write_problems();
        let writable =
            readable && problems.is_empty() && matches!(store.can_write(WRITE_LOCK_WAIT), Ok(true));
        Ok((readable, writable, problems))
    })
    .await
    .unwrap_or((false, false, Vec::new()));
    let stalled = state.tracker.stalled_for(crate::clock::now_ms());
    let tracker = state.tracker.is_alive() && stalled.is_none();
    let worker = state.worker_alive.load(Ordering::SeqCst);
    let checks = json!({"database": database, "writable": writable, "tracking": tracker, "delivery": worker});
    // Which node answered, whether it consumes the change log, and the scripts it runs: behind a
    // load balancer, what tells nodes apart.
    let node = json!({
        "name": state.node.name,
        "consumer": state.node.is_consumer(),
        "script_set": state.registry.current().fingerprint(),
    });
    if database && writable && tracker && worker {
        (
            StatusCode::OK,
            Json(json!({"status": "ready", "checks": checks, "node": node})),
        )
    } else {
        let failing: Vec<&str> = [
            ("database", database),
            ("writable", writable),
            ("tracking", tracker),
            ("delivery", worker),
        ]
        .into_iter()
        .filter(|(_, ok)| !ok)
        .map(|(name, _)| name)
        .collect();
        let mut message = format!("not ready: {}", failing.join(", "));
        if !write_problems.is_empty() {
            message.push_str(&format!(" ({})", write_problems.join("; ")));
        }
        if let Some(still) = stalled {
            message.push_str(&format!(
                " (the tracker has not moved for {} s: a script or a database call is stuck; \
                 herald_changes_waiting in /metrics says how far behind the change log is)",
                still.as_secs()
            ));
        }
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "not_ready",
                "checks": checks,
                "node": node,
                "error": {"code": "not_ready", "message": message}
            })),
        )
    }
}

/// Prometheus text format: work done (changes, events, attempts, script errors), attempt latency,
/// and the outbox (waiting deliveries, the oldest one's age, hooks by state).
#[utoipa::path(get, path = "/metrics", operation_id = "getMetrics", description = "Prometheus text format: work done, attempt latency, the outbox, the change log's backlog, the nodes. Needs no token (scrapers carry none).", tag = "operations", security(()),
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let store = state.store.clone();
    let read = blocking(move || {
        Ok((
            store.outbox_snapshot().map_err(super::ApiError::from)?,
            store.nodes().map_err(super::ApiError::from)?,
        ))
    })
    .await;
    let (snapshot, nodes) = match read {
        Ok(read) => read,
        Err(e) => return e.into_response(),
    };
    let script_set = state.registry.current().fingerprint();
    let cluster = ClusterView {
        this_node: &state.node.name,
        this_script_set: &script_set,
        nodes: &nodes,
        gone_after_ms: GONE_AFTER.as_millis() as i64,
    };
    let text = state
        .metrics
        .render(&snapshot, &cluster, crate::clock::now_ms());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
