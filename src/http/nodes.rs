//! `GET /api/v1/nodes`: the herald processes of this database, which one consumes the change log,
//! each one's last heartbeat and script set.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::{ApiError, AppState};
use crate::clock::rfc3339_ms;
use crate::node::GONE_AFTER;
use crate::store::NodeStatus;

#[derive(Serialize, ToSchema)]
pub struct NodesOut {
    /// The node that answered.
    pub(crate) this_node: String,
    pub(crate) nodes: Vec<NodeOut>,
    /// Whether every live node runs the same scripts.
    pub(crate) same_scripts: bool,
}

#[derive(Serialize, ToSchema)]
pub struct NodeOut {
    pub(crate) name: String,
    pub(crate) started_at: String,
    pub(crate) heartbeat_at: String,
    /// Seconds since its last heartbeat.
    pub(crate) heartbeat_age_seconds: f64,
    /// `up` while it beats (within 10 s), else `gone`.
    pub(crate) state: &'static str,
    /// Whether it consumes the change log (one node at a time).
    pub(crate) consumer: bool,
    /// The fingerprint of its scripts folder: nodes with different scripts show different ones.
    pub(crate) script_set: String,
    pub(crate) version: String,
}

impl From<&NodeStatus> for NodeOut {
    fn from(node: &NodeStatus) -> NodeOut {
        let up = node.heartbeat_age_ms < GONE_AFTER.as_millis() as i64;
        NodeOut {
            name: node.name.clone(),
            started_at: rfc3339_ms(node.started_at),
            heartbeat_at: rfc3339_ms(node.heartbeat_at),
            heartbeat_age_seconds: node.heartbeat_age_ms as f64 / 1000.0,
            state: if up { "up" } else { "gone" },
            consumer: node.consumer && up,
            script_set: node.script_set.clone(),
            version: node.version.clone(),
        }
    }
}

/// The nodes of this database: which consumes the change log, their heartbeats and script sets.
#[utoipa::path(get, path = "/api/v1/nodes", tag = "operations", operation_id = "listNodes", description = "The herald processes of this database: each one's last heartbeat, script set fingerprint and whether it consumes the change log.",
    responses((status = 200, body = NodesOut)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<NodesOut>, ApiError> {
    Ok(Json(nodes_overview(&state).await?))
}

pub(crate) async fn nodes_overview(state: &AppState) -> Result<NodesOut, ApiError> {
    let nodes: Vec<NodeOut> = state
        .on_store(|store| store.nodes())
        .await?
        .iter()
        .map(NodeOut::from)
        .collect();
    let mut sets = nodes
        .iter()
        .filter(|n| n.state == "up")
        .map(|n| n.script_set.as_str());
    let first = sets.next();
    let same_scripts = sets.all(|set| Some(set) == first);
    Ok(NodesOut {
        this_node: state.node.name.clone(),
        nodes,
        same_scripts,
    })
}
