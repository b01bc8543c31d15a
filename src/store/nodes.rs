//! Nodes on SQLite: one process has the file, so it is the one node and always the consumer; its
//! heartbeat is kept all the same, so that the API and the pages show the same on both databases.

use rusqlite::Row;

use super::{ConsumerRole, NodeBeat, NodeStatus, Nodes, Result, Sqlite};
use crate::clock::now_ms;

fn node_from_row(row: &Row<'_>, now: i64) -> rusqlite::Result<NodeStatus> {
    let heartbeat_at: i64 = row.get(2)?;
    Ok(NodeStatus {
        name: row.get(0)?,
        started_at: row.get(1)?,
        heartbeat_at,
        script_set: row.get(3)?,
        consumer: row.get(4)?,
        version: row.get(5)?,
        heartbeat_age_ms: (now - heartbeat_at).max(0),
    })
}

impl Nodes for Sqlite {
    fn heartbeat(&self, beat: &NodeBeat) -> Result<()> {
        self.write_noting("recording this node's heartbeat", |tx| {
            tx.prepare_cached(
                "INSERT INTO herald_nodes (name, started_at, heartbeat_at, script_set, consumer, version)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (name) DO UPDATE SET started_at = excluded.started_at,
                     heartbeat_at = excluded.heartbeat_at, script_set = excluded.script_set,
                     consumer = excluded.consumer, version = excluded.version",
            )?
            .execute((
                &beat.name,
                beat.started_at,
                now_ms(),
                &beat.script_set,
                beat.consumer,
                env!("CARGO_PKG_VERSION"),
            ))?;
            // Another name that says it consumes is a process that ran before this one.
            tx.prepare_cached("UPDATE herald_nodes SET consumer = 0 WHERE name <> ?1 AND ?2")?
                .execute((&beat.name, beat.consumer))?;
            Ok(())
        })
    }

    fn nodes(&self) -> Result<Vec<NodeStatus>> {
        let conn = self.reader();
        let now = now_ms();
        let mut stmt = conn.prepare_cached(
            "SELECT name, started_at, heartbeat_at, script_set, consumer, version
             FROM herald_nodes ORDER BY heartbeat_at DESC, name",
        )?;
        let nodes = stmt
            .query_map([], |r| node_from_row(r, now))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(nodes)
    }

    fn forget_nodes_older_than(&self, cutoff: i64) -> Result<usize> {
        self.write(|tx| {
            Ok(tx.execute("DELETE FROM herald_nodes WHERE heartbeat_at < ?1", [cutoff])?)
        })
    }

    fn hold_presence(&self) -> Result<()> {
        Ok(())
    }

    fn release_leases_of_departed(&self) -> Result<usize> {
        // One process per file: a lease it finds was its own.
        Ok(0)
    }

    fn consumer_role(&self) -> Result<Box<dyn ConsumerRole>> {
        Ok(Box::new(OnlyProcess))
    }
}

/// The file has one herald: it holds the role for good.
struct OnlyProcess;

impl ConsumerRole for OnlyProcess {
    fn holds(&mut self) -> Result<bool> {
        Ok(true)
    }
}
