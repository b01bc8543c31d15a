//! Hooks on PostgreSQL: the same operations as on SQLite (see `store::hooks` for what a hook is),
//! with secrets sealed by this layer before they are stored and opened after they are read.

use std::collections::BTreeSet;

use postgres::Row;

use super::connection::{Queries, Tx};

use super::{storable, Postgres, Result};
use crate::clock::now_ms;
use crate::store::history::page;
use crate::store::hooks::unseal;
use crate::store::{
    FilterRule, Hook, HookFilter, HookOrigin, HookPatch, HookState, Hooks, HooksForBatch, NewHook,
    Page, Scope, Secrets,
};

/// The filter of the hooks lists, parameters $1 to $5 (company, project, search, event, state).
const HOOK_FILTER: &str =
    "($1::int8 IS NULL OR company_id = $1) AND ($2::int8 IS NULL OR project_id = $2)
    AND ($3::text IS NULL OR strpos(lower(target_url), lower($3)) > 0
         OR strpos(lower(description), lower($3)) > 0)
    AND ($4::text IS NULL OR EXISTS (SELECT 1 FROM herald_hook_events e
                                     WHERE e.hook_id = herald_hooks.id AND e.event_name = $4))
    AND ($5::text IS NULL OR ($5 = 'enabled' AND enabled) OR ($5 = 'disabled' AND NOT enabled)
         OR ($5 = 'failing' AND enabled AND failures > 0))";

const HOOK_COLUMNS: &str =
    "id, target_url, secret, \"authorization\", description, origin, enabled, \
     created_at, company_id, project_id, previous_secret, previous_secret_until, updated_at, \
     failing_since, failures, disabled_reason, made_by, filter, filtered_out, \
     rate_limit_per_second";

fn hook_from_row(row: &Row) -> Hook {
    let previous_secret: Option<String> = row.get(10);
    let previous_until: Option<i64> = row.get(11);
    Hook {
        id: row.get(0),
        target_url: row.get(1),
        secret: row.get(2),
        authorization: row.get(3),
        description: row.get(4),
        origin: HookOrigin::parse(row.get(5)),
        enabled: row.get(6),
        created_at: row.get(7),
        scope: Scope::from_columns(row.get(8), row.get(9)),
        previous_secret: previous_secret.zip(previous_until),
        updated_at: row.get(12),
        events: Vec::new(),
        failing_since: row.get(13),
        failures: row.get(14),
        disabled_reason: row.get(15),
        made_by: row.get(16),
        filter: row.get(17),
        filtered_out: row.get::<_, i64>(18).max(0) as u64,
        rate_limit_per_second: row.get(19),
    }
}

fn load_events(client: &mut impl Queries, hook: &mut Hook) -> Result<()> {
    hook.events = client
        .query(
            "SELECT event_name FROM herald_hook_events WHERE hook_id = $1 ORDER BY event_name",
            &[&hook.id],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(())
}

fn get_hook_in(client: &mut impl Queries, id: &str, secrets: &Secrets) -> Result<Option<Hook>> {
    let row = client.query_opt(
        &format!("SELECT {HOOK_COLUMNS} FROM herald_hooks WHERE id = $1"),
        &[&id],
    )?;
    let Some(row) = row else {
        return Ok(None);
    };
    let mut hook = hook_from_row(&row);
    load_events(client, &mut hook)?;
    unseal(&mut hook, secrets)?;
    Ok(Some(hook))
}

/// Discards what waits for a hook (not what is in flight: its record comes back).
pub(super) fn discard_waiting(tx: &mut Tx<'_>, hook_id: &str, now: i64) -> Result<()> {
    tx.execute(
        "UPDATE herald_deliveries SET status = 'discarded', next_attempt_at = NULL, updated_at = $2
         WHERE hook_id = $1 AND next_attempt_at IS NOT NULL AND status <> 'delivering'",
        &[&hook_id, &now],
    )?;
    Ok(())
}

/// Deletes a hook and discards what waits for it.
pub(super) fn delete_hook_in(tx: &mut Tx<'_>, id: &str, now: i64) -> Result<bool> {
    let deleted = tx.execute("DELETE FROM herald_hooks WHERE id = $1", &[&id])? > 0;
    if deleted {
        discard_waiting(tx, id, now)?;
    }
    Ok(deleted)
}

impl Hooks for Postgres {
    fn create_hook(&self, new: NewHook) -> Result<Hook> {
        self.write(|tx| {
            let now = now_ms();
            let (company_id, project_id) = new.scope.columns();
            let id = crate::ids::hook_id();
            tx.execute(
                "INSERT INTO herald_hooks (id, target_url, secret, \"authorization\", description, origin,
                                           enabled, created_at, updated_at, company_id, project_id,
                                           made_by, filter, rate_limit_per_second)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9, $10, $11, $12, $13)",
                &[
                    &id,
                    &new.target_url,
                    &self.secrets().seal(&new.secret),
                    &new.authorization.as_deref().map(|a| self.secrets().seal(a)),
                    &storable(&new.description),
                    &new.origin.as_str(),
                    &new.enabled,
                    &now,
                    &company_id,
                    &project_id,
                    &new.made_by,
                    &new.filter.as_deref().map(|f| storable(f).into_owned()),
                    &new.rate_limit_per_second,
                ],
            )?;
            for event in &new.events {
                tx.execute(
                    "INSERT INTO herald_hook_events (hook_id, event_name) VALUES ($1, $2)
                     ON CONFLICT DO NOTHING",
                    &[&id, event],
                )?;
            }
            Ok(get_hook_in(tx, &id, self.secrets())?.expect("inserted in this transaction"))
        })
    }

    fn get_hook(&self, id: &str) -> Result<Option<Hook>> {
        get_hook_in(&mut *self.client()?, id, self.secrets())
    }

    fn hook_exists(&self, id: &str) -> Result<bool> {
        Ok(self
            .client()?
            .query_opt("SELECT 1 FROM herald_hooks WHERE id = $1", &[&id])?
            .is_some())
    }

    fn list_hooks(
        &self,
        filter: &HookFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<Hook, String>> {
        let mut client = self.client()?;
        let state = filter.state.map(HookState::as_str);
        let rows = client.query(
            &format!(
                "SELECT {HOOK_COLUMNS} FROM herald_hooks
                 WHERE {HOOK_FILTER} AND ($6::text IS NULL OR id < $6)
                 ORDER BY id DESC LIMIT $7"
            ),
            &[
                &filter.company_id,
                &filter.project_id,
                &filter.search,
                &filter.event,
                &state,
                &after,
                &(limit as i64 + 1),
            ],
        )?;
        let mut hooks: Vec<Hook> = rows.iter().map(hook_from_row).collect();
        for hook in &mut hooks {
            load_events(&mut *client, hook)?;
            unseal(hook, self.secrets())?;
        }
        Ok(page(hooks, limit, |hook| hook.id.clone()))
    }

    fn count_hooks(&self, filter: &HookFilter) -> Result<u64> {
        let state = filter.state.map(HookState::as_str);
        let count: i64 = self
            .client()?
            .query_one(
                &format!("SELECT count(*) FROM herald_hooks WHERE {HOOK_FILTER}"),
                &[
                    &filter.company_id,
                    &filter.project_id,
                    &filter.search,
                    &filter.event,
                    &state,
                ],
            )?
            .get(0);
        Ok(count as u64)
    }

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
                hook.description = storable(description).into_owned();
            }
            if let Some(scope) = patch.scope {
                hook.scope = scope;
            }
            if let Some(filter) = &patch.filter {
                hook.filter = filter.as_deref().map(|f| storable(f).into_owned());
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
                    hook.disabled_reason = None;
                    hook.failing_since = None;
                    hook.failures = 0;
                }
                hook.enabled = enabled;
            }
            hook.updated_at = now;
            let (company_id, project_id) = hook.scope.columns();
            tx.execute(
                "UPDATE herald_hooks SET target_url = $2, \"authorization\" = $3, description = $4,
                        company_id = $5, project_id = $6, enabled = $7, updated_at = $8,
                        disabled_reason = $9, failing_since = $10, failures = $11,
                        failure_warned = CASE WHEN $10::int8 IS NULL THEN false ELSE failure_warned END,
                        filter = $12, rate_limit_per_second = $13
                 WHERE id = $1",
                &[
                    &id,
                    &hook.target_url,
                    &hook
                        .authorization
                        .as_deref()
                        .map(|a| self.secrets().seal(a)),
                    &hook.description,
                    &company_id,
                    &project_id,
                    &hook.enabled,
                    &now,
                    &hook.disabled_reason,
                    &hook.failing_since,
                    &hook.failures,
                    &hook.filter,
                    &hook.rate_limit_per_second,
                ],
            )?;
            Ok(Some(hook))
        })
    }

    fn rotate_secret(&self, id: &str, new_secret: &str, grace_until: i64) -> Result<Option<Hook>> {
        self.write(|tx| {
            let changed = tx.execute(
                "UPDATE herald_hooks SET previous_secret = secret, previous_secret_until = $3,
                        secret = $2, updated_at = $4
                 WHERE id = $1",
                &[
                    &id,
                    &self.secrets().seal(new_secret),
                    &grace_until,
                    &now_ms(),
                ],
            )?;
            if changed == 1 {
                get_hook_in(tx, id, self.secrets())
            } else {
                Ok(None)
            }
        })
    }

    fn set_hook_event(&self, id: &str, event: &str, selected: bool) -> Result<Option<bool>> {
        self.write(|tx| {
            // Locks the hook's row, as the hook's own changes do, so that a delete cannot pass
            // between this look and the insert below.
            if tx
                .query_opt(
                    "SELECT 1 FROM herald_hooks WHERE id = $1 FOR UPDATE",
                    &[&id],
                )?
                .is_none()
            {
                return Ok(None);
            }
            let changed = if selected {
                tx.execute(
                    "INSERT INTO herald_hook_events (hook_id, event_name) VALUES ($1, $2)
                     ON CONFLICT DO NOTHING",
                    &[&id, &event],
                )?
            } else {
                tx.execute(
                    "DELETE FROM herald_hook_events WHERE hook_id = $1 AND event_name = $2",
                    &[&id, &event],
                )?
            };
            tx.execute(
                "UPDATE herald_hooks SET updated_at = $2 WHERE id = $1",
                &[&id, &now_ms()],
            )?;
            Ok(Some(changed > 0))
        })
    }

    fn seal_plain_secrets(&self) -> Result<usize> {
        if !self.secrets().is_on() {
            return Ok(0);
        }
        self.write(|tx| {
            let sealed: Option<String> = tx
                .query_opt(
                    "SELECT secret FROM herald_hooks WHERE secret LIKE 'enc:v1:%' LIMIT 1",
                    &[],
                )?
                .map(|r| r.get(0));
            if let Some(sealed) = sealed {
                self.secrets().open(&sealed)?;
            }
            let plain: Vec<(String, String, Option<String>, Option<String>)> = tx
                .query(
                    "SELECT id, secret, \"authorization\", previous_secret FROM herald_hooks
                     WHERE secret NOT LIKE 'enc:v1:%'
                        OR (\"authorization\" IS NOT NULL AND \"authorization\" NOT LIKE 'enc:v1:%')
                        OR (previous_secret IS NOT NULL AND previous_secret NOT LIKE 'enc:v1:%')",
                    &[],
                )?
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
                .collect();
            let reseal = |stored: &str| {
                if Secrets::is_sealed(stored) {
                    stored.to_owned()
                } else {
                    self.secrets().seal(stored)
                }
            };
            for (id, secret, authorization, previous) in &plain {
                tx.execute(
                    "UPDATE herald_hooks SET secret = $2, \"authorization\" = $3, previous_secret = $4
                     WHERE id = $1",
                    &[
                        id,
                        &reseal(secret),
                        &authorization.as_deref().map(reseal),
                        &previous.as_deref().map(reseal),
                    ],
                )?;
            }
            Ok(plain.len())
        })
    }

    fn hooks_per_event(&self) -> Result<Vec<(String, usize)>> {
        Ok(self
            .client()?
            .query(
                "SELECT event_name, count(*) FROM herald_hook_events
                 GROUP BY event_name ORDER BY event_name",
                &[],
            )?
            .iter()
            .map(|r| (r.get(0), r.get::<_, i64>(1) as usize))
            .collect())
    }

    fn rate_limits(&self) -> Result<Vec<(String, f64)>> {
        Ok(self
            .client()?
            .query(
                "SELECT id, rate_limit_per_second FROM herald_hooks
                 WHERE enabled AND rate_limit_per_second IS NOT NULL",
                &[],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }

    fn filter_rules(&self) -> Result<Vec<FilterRule>> {
        Ok(self.hooks_for_batch()?.filter_rules)
    }

    fn subscribed_resource_events(&self) -> Result<BTreeSet<String>> {
        Ok(self.hooks_for_batch()?.resource_events)
    }

    /// One statement for both: every (hook, filter, event) of enabled hooks that a batch needs,
    /// the events with a dot being resource events and the rows with a filter the rules.
    fn hooks_for_batch(&self) -> Result<HooksForBatch> {
        let rows = self.client()?.query(
            "SELECT h.id, h.filter, e.event_name
             FROM herald_hooks h JOIN herald_hook_events e ON e.hook_id = h.id
             WHERE h.enabled AND (h.filter IS NOT NULL OR strpos(e.event_name, '.') > 0)
             ORDER BY h.id, e.event_name",
            &[],
        )?;
        let mut resource_events = BTreeSet::new();
        let mut filtered = Vec::new();
        for row in &rows {
            let event: String = row.get(2);
            if event.contains('.') {
                resource_events.insert(event.clone());
            }
            if let Some(filter) = row.get::<_, Option<String>>(1) {
                filtered.push((row.get(0), filter, event));
            }
        }
        Ok(HooksForBatch {
            resource_events,
            filter_rules: crate::store::hooks::filter_rules(filtered),
        })
    }

    fn enabled_hooks_among(&self, ids: &[String]) -> Result<BTreeSet<String>> {
        Ok(self
            .client()?
            .query(
                "SELECT id FROM herald_hooks WHERE id = ANY($1) AND enabled",
                &[&ids],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    fn delete_hook(&self, id: &str) -> Result<bool> {
        self.write(|tx| delete_hook_in(tx, id, now_ms()))
    }

    fn acknowledge_gone_subscription(&self, id: &str, made_by: Option<&str>) -> Result<bool> {
        self.write(|tx| {
            Ok(tx.execute(
                "DELETE FROM herald_gone_subscriptions
                 WHERE id = $1 AND ($2::text IS NULL OR made_by = $2)",
                &[&id, &made_by],
            )? > 0)
        })
    }

    fn delete_subscription_made_by(&self, id: &str, made_by: &str) -> Result<bool> {
        self.write(|tx| {
            let theirs = tx
                .query_opt(
                    "SELECT 1 FROM herald_hooks
                     WHERE id = $1 AND origin = 'subscription' AND made_by = $2",
                    &[&id, &made_by],
                )?
                .is_some();
            Ok(theirs && delete_hook_in(tx, id, now_ms())?)
        })
    }
}
