//! Hooks: where events go. A subscription made through `EPT_WebhookSubscribe` is a hook with one
//! trigger; the admin API (later) creates hooks with a scope and a grid of resource events.

use rusqlite::{OptionalExtension, Row, TransactionBehavior};

use super::{Result, Store};
use crate::clock::now_ms;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookOrigin {
    /// Made by an integration through the REST hooks endpoints.
    Subscription,
    /// Made by an administrator.
    Admin,
}

impl HookOrigin {
    fn as_str(self) -> &'static str {
        match self {
            HookOrigin::Subscription => "subscription",
            HookOrigin::Admin => "admin",
        }
    }

    fn parse(text: &str) -> HookOrigin {
        if text == "admin" {
            HookOrigin::Admin
        } else {
            HookOrigin::Subscription
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewHook {
    pub target_url: String,
    pub secret: String,
    pub authorization: Option<String>,
    pub description: String,
    pub origin: HookOrigin,
    /// Trigger names (and, later, resource events) the hook receives.
    pub events: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Hook {
    pub id: String,
    pub target_url: String,
    pub secret: String,
    pub authorization: Option<String>,
    pub description: String,
    pub origin: HookOrigin,
    pub enabled: bool,
    pub created_at: i64,
    pub events: Vec<String>,
}

const HOOK_COLUMNS: &str =
    "id, target_url, secret, authorization, description, origin, enabled, created_at";

fn hook_from_row(row: &Row<'_>) -> rusqlite::Result<Hook> {
    Ok(Hook {
        id: row.get(0)?,
        target_url: row.get(1)?,
        secret: row.get(2)?,
        authorization: row.get(3)?,
        description: row.get(4)?,
        origin: HookOrigin::parse(&row.get::<_, String>(5)?),
        enabled: row.get(6)?,
        created_at: row.get(7)?,
        events: Vec::new(),
    })
}

impl Store {
    pub fn create_hook(&self, new: NewHook) -> Result<Hook> {
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let hook = Hook {
            id: crate::ids::hook_id(),
            target_url: new.target_url,
            secret: new.secret,
            authorization: new.authorization,
            description: new.description,
            origin: new.origin,
            enabled: true,
            created_at: now_ms(),
            events: new.events,
        };
        tx.execute(
            "INSERT INTO herald_hooks (id, target_url, secret, authorization, description, origin, enabled, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7)",
            (
                &hook.id,
                &hook.target_url,
                &hook.secret,
                &hook.authorization,
                &hook.description,
                hook.origin.as_str(),
                hook.created_at,
            ),
        )?;
        for event in &hook.events {
            tx.execute(
                "INSERT OR IGNORE INTO herald_hook_events (hook_id, event_name) VALUES (?1, ?2)",
                (&hook.id, event),
            )?;
        }
        tx.commit()?;
        Ok(hook)
    }

    pub fn get_hook(&self, id: &str) -> Result<Option<Hook>> {
        let conn = self.writer();
        let hook = conn
            .query_row(
                &format!("SELECT {HOOK_COLUMNS} FROM herald_hooks WHERE id = ?1"),
                [id],
                hook_from_row,
            )
            .optional()?;
        let Some(mut hook) = hook else {
            return Ok(None);
        };
        let mut stmt = conn.prepare_cached(
            "SELECT event_name FROM herald_hook_events WHERE hook_id = ?1 ORDER BY event_name",
        )?;
        hook.events = stmt
            .query_map([id], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(Some(hook))
    }

    /// Every trigger some hook receives, with how many hooks receive it, sorted by name.
    pub fn subscribed_triggers(&self) -> Result<Vec<(String, usize)>> {
        let conn = self.writer();
        let mut stmt = conn.prepare_cached(
            "SELECT event_name, count(*) FROM herald_hook_events GROUP BY event_name ORDER BY event_name",
        )?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as usize)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// Deletes a hook. Deliveries already made stay in the log; those still waiting are discarded.
    /// Returns whether the hook existed.
    pub fn delete_hook(&self, id: &str) -> Result<bool> {
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let deleted = delete_hook_in(&tx, id)?;
        tx.commit()?;
        Ok(deleted)
    }
}

/// Deletes a hook and discards its waiting deliveries. An attempt in flight finishes and is recorded;
/// its delivery is then discarded at the next claim because the hook is gone.
pub(super) fn delete_hook_in(tx: &rusqlite::Transaction<'_>, id: &str) -> Result<bool> {
    let deleted = tx.execute("DELETE FROM herald_hooks WHERE id = ?1", [id])? > 0;
    if deleted {
        tx.execute(
            "UPDATE herald_deliveries SET status = 'discarded', next_attempt_at = NULL, updated_at = ?2
             WHERE hook_id = ?1 AND next_attempt_at IS NOT NULL AND status != 'delivering'",
            (id, now_ms()),
        )?;
    }
    Ok(deleted)
}
