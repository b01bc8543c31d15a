//! The herald processes of one database ("nodes"): each one's heartbeat, the script set it runs,
//! and which one consumes the change log. On SQLite there is one; on PostgreSQL several may share
//! the database, and the database chooses the consumer (see `ConsumerRole`).

/// What a node says of itself at each heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeBeat {
    /// `node_name` (by default the host name and the listen port).
    pub name: String,
    pub started_at: i64,
    /// The hash of its script set: nodes whose folders differ show it.
    pub script_set: String,
    /// Whether it consumes the change log now.
    pub consumer: bool,
}

/// A node as the database knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    pub name: String,
    pub started_at: i64,
    /// Its last heartbeat (Unix ms, the database's clock on PostgreSQL).
    pub heartbeat_at: i64,
    pub script_set: String,
    pub consumer: bool,
    /// herald's version it runs.
    pub version: String,
    /// How long ago it last beat, in ms (measured where the heartbeat was stamped).
    pub heartbeat_age_ms: i64,
}
