//! Hooks: where events go. A hook has a target URL, a signing secret, an optional authorization
//! header, a scope, and the events it receives: trigger names (`NewOpportunity`) and resource events
//! (`Deal.update`, one cell of the resource grid). A subscription made through
//! `EPT_WebhookSubscribe` is a hook with one trigger and no scope.

use std::collections::BTreeSet;

use rusqlite::{OptionalExtension, Row, Transaction};

use super::history::page;
use super::{FilterRule, Hooks, Page, Result, Secrets, Sqlite};
use crate::clock::now_ms;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookOrigin {
    /// Made by an integration through the REST hooks endpoints.
    Subscription,
    /// Made by an administrator.
    Admin,
}

impl HookOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            HookOrigin::Subscription => "subscription",
            HookOrigin::Admin => "admin",
        }
    }

    pub(in crate::store) fn parse(text: &str) -> HookOrigin {
        if text == "admin" {
            HookOrigin::Admin
        } else {
            HookOrigin::Subscription
        }
    }
}

/// Which events of the application a hook may receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every event (subscriptions made through the REST hooks endpoints).
    Everything,
    /// Events whose row belongs to this company.
    Company(i64),
    /// Events whose row belongs to this project.
    Project(i64),
}

impl Scope {
    pub(in crate::store) fn columns(self) -> (Option<i64>, Option<i64>) {
        match self {
            Scope::Everything => (None, None),
            Scope::Company(id) => (Some(id), None),
            Scope::Project(id) => (None, Some(id)),
        }
    }

    pub(in crate::store) fn from_columns(
        company_id: Option<i64>,
        project_id: Option<i64>,
    ) -> Scope {
        match (company_id, project_id) {
            (_, Some(project)) => Scope::Project(project),
            (Some(company), None) => Scope::Company(company),
            (None, None) => Scope::Everything,
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
    pub scope: Scope,
    pub enabled: bool,
    /// Trigger names and resource events (`Deal.create`) the hook receives.
    pub events: Vec<String>,
    /// The name of the API token that made a REST-hooks subscription.
    pub made_by: Option<String>,
    /// A rhai expression over the event (`crate::filters`): only events it returns true for are
    /// delivered.
    pub filter: Option<String>,
    /// The most deliveries per second the hook's endpoint takes (`delivery::Capacity`).
    pub rate_limit_per_second: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct Hook {
    pub id: String,
    pub target_url: String,
    pub secret: String,
    /// The secret before the last rotation, and until when (Unix ms) deliveries are signed with it too.
    pub previous_secret: Option<(String, i64)>,
    pub authorization: Option<String>,
    pub description: String,
    pub origin: HookOrigin,
    pub scope: Scope,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub events: Vec<String>,
    /// When the current run of failed attempts began; `None` when the last attempt succeeded.
    pub failing_since: Option<i64>,
    /// Failed attempts in the current run.
    pub failures: i64,
    /// Why the hook is disabled, when it is.
    pub disabled_reason: Option<String>,
    /// The name of the API token that made a REST-hooks subscription.
    pub made_by: Option<String>,
    pub filter: Option<String>,
    /// How many events its filter kept from it.
    pub filtered_out: u64,
    pub rate_limit_per_second: Option<f64>,
}

/// A change to a hook; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct HookPatch {
    pub target_url: Option<String>,
    /// `Some(None)` removes the header.
    pub authorization: Option<Option<String>>,
    pub description: Option<String>,
    pub scope: Option<Scope>,
    pub enabled: Option<bool>,
    /// `Some(None)` removes the filter.
    pub filter: Option<Option<String>>,
    /// `Some(None)` removes the limit.
    pub rate_limit_per_second: Option<Option<f64>>,
}

/// Which hooks a listing shows.
#[derive(Debug, Clone, Default)]
pub struct HookFilter {
    pub company_id: Option<i64>,
    pub project_id: Option<i64>,
    /// In the endpoint URL or the description, any case.
    pub search: Option<String>,
    /// Hooks that select this trigger or resource event.
    pub event: Option<String>,
    pub state: Option<HookState>,
}

/// A hook's state, as the lists filter by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookState {
    Enabled,
    Disabled,
    /// Enabled, with its latest attempts failing.
    Failing,
}

impl HookState {
    pub fn parse(text: &str) -> Option<HookState> {
        match text {
            "enabled" => Some(HookState::Enabled),
            "disabled" => Some(HookState::Disabled),
            "failing" => Some(HookState::Failing),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            HookState::Enabled => "enabled",
            HookState::Disabled => "disabled",
            HookState::Failing => "failing",
        }
    }
}

/// The filter of the hooks lists, parameters ?1 to ?5 (company, project, search, event, state).
const HOOK_FILTER: &str = "(?1 IS NULL OR company_id = ?1) AND (?2 IS NULL OR project_id = ?2)
    AND (?3 IS NULL OR instr(lower(target_url), lower(?3)) > 0
         OR instr(lower(description), lower(?3)) > 0)
    AND (?4 IS NULL OR EXISTS (SELECT 1 FROM herald_hook_events e
                               WHERE e.hook_id = herald_hooks.id AND e.event_name = ?4))
    AND (?5 IS NULL OR (?5 = 'enabled' AND enabled = 1) OR (?5 = 'disabled' AND enabled = 0)
         OR (?5 = 'failing' AND enabled = 1 AND failures > 0))";

const HOOK_COLUMNS: &str = "id, target_url, secret, authorization, description, origin, enabled, \
     created_at, company_id, project_id, previous_secret, previous_secret_until, updated_at, \
     failing_since, failures, disabled_reason, made_by, filter, filtered_out, \
     rate_limit_per_second";

fn hook_from_row(row: &Row<'_>) -> rusqlite::Result<Hook> {
    let previous_secret: Option<String> = row.get(10)?;
    let previous_until: Option<i64> = row.get(11)?;
    let created_at: i64 = row.get(7)?;
    Ok(Hook {
        id: row.get(0)?,
        target_url: row.get(1)?,
        secret: row.get(2)?,
        authorization: row.get(3)?,
        description: row.get(4)?,
        origin: HookOrigin::parse(&row.get::<_, String>(5)?),
        enabled: row.get(6)?,
        created_at,
        scope: Scope::from_columns(row.get(8)?, row.get(9)?),
        previous_secret: previous_secret.zip(previous_until),
        updated_at: row.get::<_, Option<i64>>(12)?.unwrap_or(created_at),
        events: Vec::new(),
        failing_since: row.get(13)?,
        failures: row.get(14)?,
        disabled_reason: row.get(15)?,
        made_by: row.get(16)?,
        filter: row.get(17)?,
        filtered_out: row.get::<_, i64>(18)?.max(0) as u64,
        rate_limit_per_second: row.get(19)?,
    })
}

fn load_events(conn: &rusqlite::Connection, hook: &mut Hook) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "SELECT event_name FROM herald_hook_events WHERE hook_id = ?1 ORDER BY event_name",
    )?;
    hook.events = stmt
        .query_map([&hook.id], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(())
}

/// Opens the sealed columns of a hook read from the database.
pub(in crate::store) fn unseal(hook: &mut Hook, secrets: &Secrets) -> Result<()> {
    hook.secret = secrets.open(&hook.secret)?;
    if let Some(authorization) = &hook.authorization {
        hook.authorization = Some(secrets.open(authorization)?);
    }
    if let Some((previous, until)) = &hook.previous_secret {
        hook.previous_secret = Some((secrets.open(previous)?, *until));
    }
    Ok(())
}

fn get_hook_in(conn: &rusqlite::Connection, id: &str, secrets: &Secrets) -> Result<Option<Hook>> {
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
    load_events(conn, &mut hook)?;
    unseal(&mut hook, secrets)?;
    Ok(Some(hook))
}

impl Hooks for Sqlite {
    fn create_hook(&self, new: NewHook) -> Result<Hook> {
        self.write(|tx| {
            let now = now_ms();
            let (company_id, project_id) = new.scope.columns();
            let id = crate::ids::hook_id();
            tx.execute(
                "INSERT INTO herald_hooks (id, target_url, secret, authorization, description, origin,
                                           enabled, created_at, updated_at, company_id, project_id,
                                           made_by, filter, rate_limit_per_second)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9, ?10, ?11, ?12, ?13)",
                (
                    &id,
                    &new.target_url,
                    self.secrets().seal(&new.secret),
                    new.authorization.as_deref().map(|a| self.secrets().seal(a)),
                    &new.description,
                    new.origin.as_str(),
                    new.enabled,
                    now,
                    company_id,
                    project_id,
                    &new.made_by,
                    &new.filter,
                    new.rate_limit_per_second,
                ),
            )?;
            for event in &new.events {
                tx.execute(
                    "INSERT OR IGNORE INTO herald_hook_events (hook_id, event_name) VALUES (?1, ?2)",
                    (&id, event),
                )?;
            }
            let hook = get_hook_in(tx, &id, self.secrets())?.expect("inserted in this transaction");
            Ok(hook)
        })
    }

    fn get_hook(&self, id: &str) -> Result<Option<Hook>> {
        get_hook_in(&self.reader(), id, self.secrets())
    }

    fn hook_exists(&self, id: &str) -> Result<bool> {
        Ok(self
            .reader()
            .prepare_cached("SELECT 1 FROM herald_hooks WHERE id = ?1")?
            .exists([id])?)
    }

    /// Hooks newest first, at most `limit`, after the hook `after` (a cursor: the last id of the
    /// previous page).
    fn list_hooks(
        &self,
        filter: &HookFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<Hook, String>> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {HOOK_COLUMNS} FROM herald_hooks
             WHERE {HOOK_FILTER} AND (?6 IS NULL OR id < ?6)
             ORDER BY id DESC LIMIT ?7"
        ))?;
        let mut hooks = stmt
            .query_map(
                (
                    filter.company_id,
                    filter.project_id,
                    filter.search.as_deref(),
                    filter.event.as_deref(),
                    filter.state.map(HookState::as_str),
                    after,
                    limit as i64 + 1,
                ),
                hook_from_row,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        for hook in &mut hooks {
            load_events(&conn, hook)?;
            unseal(hook, self.secrets())?;
        }
        Ok(page(hooks, limit, |hook| hook.id.clone()))
    }

    fn count_hooks(&self, filter: &HookFilter) -> Result<u64> {
        let conn = self.reader();
        let count: i64 = conn
            .prepare_cached(&format!(
                "SELECT count(*) FROM herald_hooks WHERE {HOOK_FILTER}"
            ))?
            .query_row(
                (
                    filter.company_id,
                    filter.project_id,
                    filter.search.as_deref(),
                    filter.event.as_deref(),
                    filter.state.map(HookState::as_str),
                ),
                |r| r.get(0),
            )?;
        Ok(count as u64)
    }

    /// Applies `patch`; `None` when there is no such hook. Disabling a hook discards what waits for it.
    fn update_hook(&self, id: &str, patch: &HookPatch) -> Result<Option<Hook>> {
        self.write(|tx| {
            let Some(mut hook) = get_hook_in(tx, id, self.secrets())? else {
                return Ok(None);
            };
            if let Some(url) = &patch.target_url {
                hook.target_url = url.clone();
            }
            if let Some(authorization) = &patch.authorization {
                hook.authorization = authorization.clone();
            }
            if let Some(description) = &patch.description {
                hook.description = description.clone();
            }
            if let Some(scope) = patch.scope {
                hook.scope = scope;
            }
            if let Some(filter) = &patch.filter {
                hook.filter = filter.clone();
            }
            if let Some(limit) = patch.rate_limit_per_second {
                hook.rate_limit_per_second = limit;
            }
            let now = now_ms();
            if let Some(enabled) = patch.enabled {
                if hook.enabled && !enabled {
                    discard_waiting(tx, id, now)?;
                    hook.disabled_reason = Some("disabled by an administrator".into());
                }
                if !hook.enabled && enabled {
                    // A fresh start: the run of failures that may have disabled it is over.
                    hook.disabled_reason = None;
                    hook.failing_since = None;
                    hook.failures = 0;
                }
                hook.enabled = enabled;
            }
            hook.updated_at = now;
            let (company_id, project_id) = hook.scope.columns();
            tx.execute(
                "UPDATE herald_hooks SET target_url = ?2, authorization = ?3, description = ?4,
                        company_id = ?5, project_id = ?6, enabled = ?7, updated_at = ?8,
                        disabled_reason = ?9, failing_since = ?10, failures = ?11,
                        failure_warned = CASE WHEN ?10 IS NULL THEN 0 ELSE failure_warned END,
                        filter = ?12, rate_limit_per_second = ?13
                 WHERE id = ?1",
                rusqlite::params![
                    id,
                    &hook.target_url,
                    hook.authorization
                        .as_deref()
                        .map(|a| self.secrets().seal(a)),
                    &hook.description,
                    company_id,
                    project_id,
                    hook.enabled,
                    now,
                    &hook.disabled_reason,
                    hook.failing_since,
                    hook.failures,
                    &hook.filter,
                    hook.rate_limit_per_second,
                ],
            )?;
            Ok(Some(hook))
        })
    }

    /// Replaces the signing secret; the old one keeps signing (beside the new) until `grace_until`.
    fn rotate_secret(&self, id: &str, new_secret: &str, grace_until: i64) -> Result<Option<Hook>> {
        self.write(|tx| {
            let now = now_ms();
            let changed = tx.execute(
                "UPDATE herald_hooks SET previous_secret = secret, previous_secret_until = ?3,
                        secret = ?2, updated_at = ?4
                 WHERE id = ?1",
                (id, self.secrets().seal(new_secret), grace_until, now),
            )?;
            let hook = if changed == 1 {
                get_hook_in(tx, id, self.secrets())?
            } else {
                None
            };
            Ok(hook)
        })
    }

    /// Ticks (`selected`) or clears one event of a hook: a trigger name or a resource event. Returns
    /// `None` when there is no such hook, else whether anything changed.
    fn set_hook_event(&self, id: &str, event: &str, selected: bool) -> Result<Option<bool>> {
        self.write(|tx| {
            let exists: Option<i64> = tx
                .query_row("SELECT 1 FROM herald_hooks WHERE id = ?1", [id], |r| {
                    r.get(0)
                })
                .optional()?;
            if exists.is_none() {
                return Ok(None);
            }
            let changed = if selected {
                tx.execute(
                    "INSERT OR IGNORE INTO herald_hook_events (hook_id, event_name) VALUES (?1, ?2)",
                    (id, event),
                )?
            } else {
                tx.execute(
                    "DELETE FROM herald_hook_events WHERE hook_id = ?1 AND event_name = ?2",
                    (id, event),
                )?
            };
            tx.execute(
                "UPDATE herald_hooks SET updated_at = ?2 WHERE id = ?1",
                (id, now_ms()),
            )?;
            Ok(Some(changed > 0))
        })
    }

    /// Seals every secret and authorization header still stored in plain text (written before
    /// encryption was on, or by a tool without the key). Returns how many hooks were sealed.
    fn seal_plain_secrets(&self) -> Result<usize> {
        if !self.secrets().is_on() {
            return Ok(0);
        }
        // (And checks that the key is the database's, and opens what is already sealed.)
        self.write(|tx| {
            let check: Option<String> = tx
                .query_row(
                    "SELECT value FROM herald_secrets WHERE name = 'key_check'",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            match check {
                Some(check) => self.secrets().matches_key_check(&check)?,
                None => {
                    if let Some(check) = self.secrets().key_check() {
                        tx.execute(
                            "INSERT INTO herald_secrets (name, value) VALUES ('key_check', ?1)",
                            [check],
                        )?;
                    }
                }
            }
            // A wrong key is found now, at start, not at the first delivery.
            let sealed: Option<String> = tx
                .query_row(
                    "SELECT secret FROM herald_hooks WHERE secret LIKE 'enc:v1:%' LIMIT 1",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(sealed) = sealed {
                self.secrets().open(&sealed)?;
            }
            let plain: Vec<(String, String, Option<String>, Option<String>)> = {
                let mut stmt = tx.prepare(
                    "SELECT id, secret, authorization, previous_secret FROM herald_hooks
                     WHERE secret NOT LIKE 'enc:v1:%'
                        OR (authorization IS NOT NULL AND authorization NOT LIKE 'enc:v1:%')
                        OR (previous_secret IS NOT NULL AND previous_secret NOT LIKE 'enc:v1:%')",
                )?;
                let rows = stmt
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                rows
            };
            let reseal = |stored: &str| -> Result<String> {
                if Secrets::is_sealed(stored) {
                    Ok(stored.to_owned())
                } else {
                    Ok(self.secrets().seal(stored))
                }
            };
            for (id, secret, authorization, previous) in &plain {
                tx.execute(
                    "UPDATE herald_hooks SET secret = ?2, authorization = ?3, previous_secret = ?4
                     WHERE id = ?1",
                    (
                        id,
                        reseal(secret)?,
                        authorization.as_deref().map(reseal).transpose()?,
                        previous.as_deref().map(reseal).transpose()?,
                    ),
                )?;
            }
            Ok(plain.len())
        })
    }

    /// Every event name (trigger or resource event) some hook selects, with how many hooks select
    /// it, sorted by name.
    fn hooks_per_event(&self) -> Result<Vec<(String, usize)>> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT event_name, count(*) FROM herald_hook_events
             GROUP BY event_name ORDER BY event_name",
        )?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as usize)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    fn rate_limits(&self) -> Result<Vec<(String, f64)>> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT id, rate_limit_per_second FROM herald_hooks
             WHERE enabled = 1 AND rate_limit_per_second IS NOT NULL",
        )?;
        let limits = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(limits)
    }

    /// The filters of enabled hooks, with the events each hook selects.
    fn filter_rules(&self) -> Result<Vec<FilterRule>> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT h.id, h.filter, e.event_name
             FROM herald_hooks h JOIN herald_hook_events e ON e.hook_id = h.id
             WHERE h.enabled = 1 AND h.filter IS NOT NULL
             ORDER BY h.id, e.event_name",
        )?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<Vec<(String, String, String)>>>()?;
        Ok(filter_rules(rows))
    }

    /// The resource events (`Deal.update`) that at least one enabled hook receives.
    fn subscribed_resource_events(&self) -> Result<BTreeSet<String>> {
        subscribed_resource_events(&self.reader())
    }

    /// Which of `ids` are hooks that exist and are enabled: a worker holding deliveries for the
    /// others (disabled or deleted since they were claimed) hands them back instead of sending.
    fn enabled_hooks_among(&self, ids: &[String]) -> Result<BTreeSet<String>> {
        let conn = self.reader();
        let mut stmt =
            conn.prepare_cached("SELECT 1 FROM herald_hooks WHERE id = ?1 AND enabled = 1")?;
        let mut enabled = BTreeSet::new();
        for id in ids {
            if stmt.exists([id])? {
                enabled.insert(id.clone());
            }
        }
        Ok(enabled)
    }

    /// Deletes a hook. Deliveries already made stay in the log; those still waiting are discarded.
    /// Returns whether the hook existed.
    fn delete_hook(&self, id: &str) -> Result<bool> {
        self.write(|tx| {
            let deleted = delete_hook_in(tx, id)?;
            Ok(deleted)
        })
    }

    /// Deletes a REST-hooks subscription only if the token named `made_by` made it; returns
    /// whether it did. Any other hook, whoever made it, is left alone, and the answer is the same
    /// as for an id that does not exist.
    fn acknowledge_gone_subscription(&self, id: &str, made_by: Option<&str>) -> Result<bool> {
        self.write(|tx| {
            Ok(tx.execute(
                "DELETE FROM herald_gone_subscriptions WHERE id = ?1 AND (?2 IS NULL OR made_by = ?2)",
                (id, made_by),
            )? > 0)
        })
    }

    fn delete_subscription_made_by(&self, id: &str, made_by: &str) -> Result<bool> {
        self.write(|tx| {
            let theirs = tx
                .prepare_cached(
                    "SELECT 1 FROM herald_hooks
                     WHERE id = ?1 AND origin = 'subscription' AND made_by = ?2",
                )?
                .exists((id, made_by))?;
            let deleted = theirs && delete_hook_in(tx, id)?;
            Ok(deleted)
        })
    }
}

/// Rules from (hook id, filter, event name) rows sorted by hook id.
pub(in crate::store) fn filter_rules(rows: Vec<(String, String, String)>) -> Vec<FilterRule> {
    let mut rules: Vec<FilterRule> = Vec::new();
    for (hook_id, filter, event) in rows {
        match rules.last_mut() {
            Some(rule) if rule.hook_id == hook_id => rule.events.push(event),
            _ => rules.push(FilterRule {
                hook_id,
                filter,
                events: vec![event],
            }),
        }
    }
    rules
}

pub(super) fn subscribed_resource_events(conn: &rusqlite::Connection) -> Result<BTreeSet<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT e.event_name FROM herald_hook_events e
         JOIN herald_hooks h ON h.id = e.hook_id
         WHERE h.enabled = 1 AND instr(e.event_name, '.') > 0",
    )?;
    let names = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(names)
}

pub(super) fn discard_waiting(tx: &Transaction<'_>, hook_id: &str, now: i64) -> Result<()> {
    tx.execute(
        "UPDATE herald_deliveries SET status = 'discarded', next_attempt_at = NULL, updated_at = ?2
         WHERE hook_id = ?1 AND next_attempt_at IS NOT NULL AND status != 'delivering'",
        (hook_id, now),
    )?;
    Ok(())
}

/// Deletes a hook and discards its waiting deliveries. An attempt in flight finishes and is recorded;
/// its delivery is then discarded at the next claim because the hook is gone.
pub(super) fn delete_hook_in(tx: &Transaction<'_>, id: &str) -> Result<bool> {
    let deleted = tx.execute("DELETE FROM herald_hooks WHERE id = ?1", [id])? > 0;
    if deleted {
        discard_waiting(tx, id, now_ms())?;
    }
    Ok(deleted)
}
