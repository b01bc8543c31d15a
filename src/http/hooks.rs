//! `/api/v1/hooks`: hooks as administrators configure them. A hook has a scope (a company or a
//! project), a notification endpoint, an optional authorization header, a signing secret and the
//! events it receives (chosen at creation, or cell by cell in `grid.rs`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::filters::{checked_filter, rejudge};
use super::openapi::ErrorBody;
use super::{
    blocking, checked_target, invalid_cursor, parse_json, parse_page, ApiError, AppJson, AppQuery,
    AppState,
};
use crate::clock::{now_ms, rfc3339_ms};
use crate::delivery::signing::generate_secret;
use crate::delivery::{mask_authorization, mask_secret};
use crate::events::{parse_resource_event, RESOURCE_ACTIONS};
use crate::store::{
    Cell, Hook, HookFilter, HookOrigin, HookPatch, HookState, NewHook, RowLimit, Scope, StoreError,
};

/// The longest authorization header and description herald stores.
const MAX_AUTHORIZATION: usize = 4096;
const MAX_DESCRIPTION: usize = 1000;
/// How long a rotated secret keeps signing beside the new one, unless the request says otherwise.
const DEFAULT_GRACE_SECS: u64 = 24 * 3600;
const MAX_GRACE_SECS: u64 = 30 * 24 * 3600;

/// A hook as the API shows it: the secret and the authorization header masked.
#[derive(Serialize, ToSchema)]
pub struct HookOut {
    pub(crate) id: String,
    /// `admin` (made here) or `subscription` (made through `EPT_WebhookSubscribe`).
    pub(crate) origin: &'static str,
    /// `company`, `project`, or `all` for a subscription, which has no scope.
    pub(crate) scope: &'static str,
    pub(crate) company_id: Option<i64>,
    pub(crate) project_id: Option<i64>,
    pub(crate) target_url: String,
    pub(crate) description: String,
    /// Masked: a known scheme and stars (`Basic ********`), or stars and the last four characters
    /// of a credential of 12 or more; never the credential.
    pub(crate) authorization: Option<String>,
    /// Whole only in the answers of create and rotate-secret; masked everywhere else.
    pub(crate) secret: String,
    /// While a rotated secret still signs beside the new one: until when (RFC 3339).
    pub(crate) previous_secret_valid_until: Option<String>,
    pub(crate) enabled: bool,
    /// `enabled` or `disabled`.
    pub(crate) status: &'static str,
    /// Why it is disabled: by an administrator, a 410 Gone, or every attempt failing for the
    /// window (`delivery.disable_failing_after_days`).
    pub(crate) disabled_reason: Option<String>,
    /// When the current run of failed attempts began (RFC 3339); `null` when the last attempt
    /// succeeded. After a hook is disabled for failing, retry-failed since this time (with
    /// `include_discarded`) recovers what it missed.
    pub(crate) failing_since: Option<String>,
    /// Failed attempts in the current run.
    pub(crate) consecutive_failures: i64,
    /// Trigger names and resource events (`Deal.update`) the hook receives.
    pub(crate) events: Vec<String>,
    /// A rhai expression over `payload`, `event` and `change`: only events it returns true for
    /// are delivered (see docs/scripting.md, "Filters").
    pub(crate) filter: Option<String>,
    /// How many events the filter kept from the hook.
    pub(crate) filtered_out: u64,
    /// The most deliveries per second sent to the endpoint; the others wait (delayed, not
    /// failed). `null`: no limit.
    pub(crate) rate_limit_per_second: Option<f64>,
    pub(crate) created_at: String,
    pub(crate) updated_at: String,
}

impl HookOut {
    fn masked(hook: Hook) -> HookOut {
        let secret = mask_secret(&hook.secret);
        HookOut::with_secret(hook, secret)
    }

    fn with_secret(hook: Hook, secret: String) -> HookOut {
        let (scope, company_id, project_id) = match hook.scope {
            Scope::Everything => ("all", None, None),
            Scope::Company(id) => ("company", Some(id), None),
            Scope::Project(id) => ("project", None, Some(id)),
        };
        let now = now_ms();
        HookOut {
            id: hook.id,
            origin: hook.origin.as_str(),
            scope,
            company_id,
            project_id,
            target_url: hook.target_url,
            description: hook.description,
            authorization: hook.authorization.as_deref().map(mask_authorization),
            secret,
            previous_secret_valid_until: hook
                .previous_secret
                .filter(|(_, until)| *until > now)
                .map(|(_, until)| rfc3339_ms(until)),
            enabled: hook.enabled,
            status: if hook.enabled { "enabled" } else { "disabled" },
            disabled_reason: hook.disabled_reason,
            failing_since: hook.failing_since.map(rfc3339_ms),
            consecutive_failures: hook.failures,
            events: hook.events,
            filter: hook.filter,
            filtered_out: hook.filtered_out,
            rate_limit_per_second: hook.rate_limit_per_second,
            created_at: rfc3339_ms(hook.created_at),
            updated_at: rfc3339_ms(hook.updated_at),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateHookIn {
    /// The notification endpoint: an http or https URL.
    #[serde(alias = "endpoint")]
    pub(crate) target_url: Option<String>,
    /// Company-level hook: events whose row belongs to this company. Give this or `project_id`.
    pub(crate) company_id: Option<i64>,
    /// Project-level hook: events whose row belongs to this project. Give this or `company_id`.
    pub(crate) project_id: Option<i64>,
    /// Sent verbatim as the `Authorization` header of each delivery (`Basic c3a2...`, `Bearer ...`).
    pub(crate) authorization: Option<String>,
    pub(crate) description: Option<String>,
    /// Trigger names and resource events (`Deal.create`) to receive from the start.
    #[serde(default)]
    pub(crate) events: Vec<String>,
    /// Defaults to true.
    pub(crate) enabled: Option<bool>,
    /// Only events this rhai expression returns true for are delivered; it sees `payload`,
    /// `event` and `change`. One that does not compile is refused with its line and column.
    pub(crate) filter: Option<String>,
    /// The most deliveries per second to send to the endpoint (more than 0, at most 10,000);
    /// the others wait, delayed, not failed.
    pub(crate) rate_limit_per_second: Option<f64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateHookIn {
    #[serde(alias = "endpoint")]
    pub(crate) target_url: Option<String>,
    /// `null` removes the header.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub(crate) authorization: Option<Option<String>>,
    pub(crate) description: Option<String>,
    pub(crate) enabled: Option<bool>,
    /// Moves the hook to this company (give this or `project_id`, not both).
    pub(crate) company_id: Option<i64>,
    /// Moves the hook to this project.
    pub(crate) project_id: Option<i64>,
    /// A new filter; `null` removes it. The events its old filter failed on are judged again.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub(crate) filter: Option<Option<String>>,
    /// A new rate limit (deliveries per second); `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<f64>)]
    pub(crate) rate_limit_per_second: Option<Option<f64>>,
}

/// Tells a field sent as `null` (`Some(None)`) from a field left out (`None`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListHooksQuery {
    /// Only hooks of this company.
    #[param(value_type = Option<i64>)]
    pub(crate) company_id: Option<String>,
    /// Only hooks of this project.
    #[param(value_type = Option<i64>)]
    pub(crate) project_id: Option<String>,
    /// Only hooks whose endpoint URL or description contains this, in any case.
    pub(crate) q: Option<String>,
    /// Only hooks that select this trigger or resource event (`NewOpportunity`, `Deal.update`).
    pub(crate) event: Option<String>,
    /// Only hooks in this state: `enabled`, `disabled` or `failing` (enabled, its latest attempts
    /// failing).
    pub(crate) status: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^hook_[0-9a-f]{32}$")]
    pub(crate) cursor: Option<String>,
    /// 1 to 100, default 25.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub(crate) limit: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct HookPage {
    pub(crate) hooks: Vec<HookOut>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub(crate) next_cursor: Option<String>,
    /// How many hooks the filter keeps, on every page.
    pub(crate) total: u64,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RotateSecretIn {
    /// How long the old secret keeps signing beside the new one, in seconds (default 86400, at most
    /// 30 days; 0 drops it at once).
    pub(crate) grace_seconds: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct Deleted {
    pub(crate) id: String,
    pub(crate) deleted: bool,
}

pub(crate) fn unprocessable(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
}

pub(crate) fn unknown_hook(id: &str) -> ApiError {
    ApiError::not_found("unknown_hook", format!("no hook with id '{id}'"))
}

fn requested_scope(company_id: Option<i64>, project_id: Option<i64>) -> Result<Scope, ApiError> {
    match (company_id, project_id) {
        (Some(company), None) => Ok(Scope::Company(company)),
        (None, Some(project)) => Ok(Scope::Project(project)),
        (None, None) => Err(unprocessable(
            "invalid_scope",
            "a hook needs a scope: give company_id (a company-level hook) or project_id (a project-level hook)",
        )),
        (Some(_), Some(_)) => Err(unprocessable(
            "invalid_scope",
            "give company_id or project_id, not both: a hook is company-level or project-level",
        )),
    }
}

fn checked_authorization(value: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(value) = value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if value.len() > MAX_AUTHORIZATION
        || axum::http::HeaderValue::from_str(&value).is_err()
        || value.chars().any(|c| c.is_control())
    {
        return Err(unprocessable(
            "invalid_authorization",
            format!("the authorization header must be printable text of at most {MAX_AUTHORIZATION} bytes, like 'Basic c3a2...' or 'Bearer ...'"),
        ));
    }
    Ok(Some(value))
}

/// The highest rate limit herald takes: past it, a limit limits nothing the worker could send.
const MAX_RATE_LIMIT: f64 = 10_000.0;

pub(crate) fn checked_rate_limit(value: Option<f64>) -> Result<Option<f64>, ApiError> {
    match value {
        Some(limit) if !(limit.is_finite() && limit > 0.0 && limit <= MAX_RATE_LIMIT) => {
            let not = if limit.is_nan() {
                "a number".to_owned()
            } else {
                limit.to_string()
            };
            Err(unprocessable(
                "invalid_rate_limit",
                format!(
                    "rate_limit_per_second must be more than 0 and at most {MAX_RATE_LIMIT}, not {not}"
                ),
            ))
        }
        other => Ok(other),
    }
}

fn checked_description(value: Option<String>) -> Result<Option<String>, ApiError> {
    match value {
        Some(d) if d.chars().count() > MAX_DESCRIPTION => Err(unprocessable(
            "invalid_description",
            format!("the description is longer than {MAX_DESCRIPTION} characters"),
        )),
        Some(d) if d.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) => {
            Err(unprocessable(
                "invalid_description",
                "the description holds a control character (such as NUL); only text, tabs and line breaks",
            ))
        }
        other => Ok(other),
    }
}

/// A scope names a company or a project of the application: a positive id, and, where the
/// application has a `Company` (`Project`) table, one of its rows (`events::row_scope` reads the
/// same tables).
async fn checked_scope(state: &AppState, scope: Scope) -> Result<Scope, ApiError> {
    let (table, field, id) = match scope {
        Scope::Company(id) => ("Company", "company_id", id),
        Scope::Project(id) => ("Project", "project_id", id),
        Scope::Everything => return Ok(scope),
    };
    if id <= 0 {
        return Err(unprocessable(
            "invalid_scope",
            format!("{field} must be the positive id of a {table} row, not {id}"),
        ));
    }
    let found = state
        .on_store(move |store| {
            let Some(name) = store
                .application_tables()?
                .into_iter()
                .find(|t| t.eq_ignore_ascii_case(table))
            else {
                // An application without such a table: herald cannot tell, and takes the id.
                return Ok(true);
            };
            let rows = store
                .script_db()?
                .query(
                    &format!("SELECT 1 FROM \"{name}\" WHERE id = ?"),
                    &[Cell::Integer(id)],
                    RowLimit::First,
                )
                .map_err(|e| StoreError::Connect(format!("looking up {field} {id}: {e}")))?;
            Ok(!rows.values.is_empty())
        })
        .await?;
    if found {
        Ok(scope)
    } else {
        Err(unprocessable(
            if table == "Company" {
                "unknown_company"
            } else {
                "unknown_project"
            },
            format!("no {table} row has id {id} ({field})"),
        ))
    }
}

/// Checks that every name is a trigger defined by a body script or a resource event of an
/// application table.
pub(crate) async fn checked_events(
    state: &AppState,
    events: Vec<String>,
) -> Result<Vec<String>, ApiError> {
    let scripts = state.registry.current();
    let tables = state
        .on_store(move |store| store.application_tables())
        .await?;
    for name in &events {
        match parse_resource_event(name) {
            Some((table, action)) => {
                if !tables.iter().any(|t| t == table) {
                    return Err(unprocessable(
                        "unknown_resource",
                        format!("'{name}': there is no table {table} to track"),
                    ));
                }
                if !RESOURCE_ACTIONS.contains(&action) {
                    return Err(unprocessable(
                        "unknown_action",
                        format!("'{name}': the actions are create, update and delete"),
                    ));
                }
            }
            None if scripts.body(name).is_some() => {}
            None => {
                return Err(unprocessable(
                    "unknown_event",
                    format!("'{name}' is neither a trigger (no GetWebhookResponseBody_{name}.rhai) nor a resource event like Deal.create"),
                ))
            }
        }
    }
    Ok(events)
}

/// Installs or drops tracking triggers so that the selected resource events are caught from the very
/// next change.
pub(crate) async fn sync_tracking(state: &AppState) -> Result<(), ApiError> {
    let tables = state.registry.current().tracked_tables();
    let problems = state
        .on_store(move |store| store.sync_tracking(&tables))
        .await?;
    for problem in problems {
        tracing::error!(table = %problem.table, "cannot track: {}", problem.message);
    }
    Ok(())
}

pub(crate) async fn load(state: &AppState, id: String) -> Result<Hook, ApiError> {
    let hook_id = id.clone();
    state
        .on_store(move |store| store.get_hook(&hook_id))
        .await?
        .ok_or_else(|| unknown_hook(&id))
}

/// Creates a hook; its secret is in this answer and never again.
#[utoipa::path(post, path = "/api/v1/hooks", operation_id = "createHook", description = "Creates a company- or project-level hook with its endpoint, optional authorization header and selected events. The answer holds the signing secret whole, once.", tag = "hooks", request_body = CreateHookIn,
    responses(
        (status = 201, description = "The hook, its secret whole", body = HookOut),
        (status = 422, description = "Bad endpoint, scope, header or event", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    AppJson(body): AppJson<CreateHookIn>,
) -> Result<(StatusCode, Json<HookOut>), ApiError> {
    Ok((StatusCode::CREATED, Json(create_hook(&state, body).await?)))
}

/// Creates a hook (the API's and the admin pages' one way): the answer holds the secret whole.
pub(crate) async fn create_hook(state: &AppState, body: CreateHookIn) -> Result<HookOut, ApiError> {
    let target_url = body
        .target_url
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| ApiError::missing_field("target_url"))?;
    let scope = checked_scope(state, requested_scope(body.company_id, body.project_id)?).await?;
    let authorization = checked_authorization(body.authorization)?;
    let description = checked_description(body.description)?.unwrap_or_default();
    let target_url = checked_target(state, target_url.trim()).await?;
    let events = checked_events(state, body.events).await?;
    let filter = checked_filter(state, body.filter).await?;
    let rate_limit_per_second = checked_rate_limit(body.rate_limit_per_second)?;
    let new = NewHook {
        target_url,
        secret: generate_secret(),
        authorization,
        description,
        origin: HookOrigin::Admin,
        scope,
        enabled: body.enabled.unwrap_or(true),
        events,
        made_by: None,
        filter,
        rate_limit_per_second,
    };
    let hook = state.on_store(move |store| store.create_hook(new)).await?;
    state
        .capacity
        .set_rate_limit(&hook.id, hook.rate_limit_per_second);
    sync_tracking(state).await?;
    tracing::info!(hook_id = %hook.id, target = %hook.target_url, "hook created");
    let secret = hook.secret.clone();
    Ok(HookOut::with_secret(hook, secret))
}

/// Lists hooks, newest first.
#[utoipa::path(get, path = "/api/v1/hooks", operation_id = "listHooks", description = "The hooks, newest first, paged by cursor, with the total the filters keep; filter by scope, by a text in the endpoint or description (q), by a selected event and by status. Secrets and authorization headers masked.", tag = "hooks", params(ListHooksQuery),
    responses(
        (status = 200, body = HookPage),
        (status = 400, description = "Bad cursor or filter", body = ErrorBody),
        (status = 422, description = "Page size out of range", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    AppQuery(query): AppQuery<ListHooksQuery>,
) -> Result<Json<HookPage>, ApiError> {
    let number = |name: &str, value: Option<String>| -> Result<Option<i64>, ApiError> {
        value
            .map(|v| {
                v.trim().parse::<i64>().map_err(|_| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_query",
                        format!("{name} must be a whole number"),
                    )
                })
            })
            .transpose()
    };
    let text = |value: Option<String>| value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let wanted_state = match text(query.status) {
        None => None,
        Some(status) => Some(HookState::parse(&status).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                format!("status must be enabled, disabled or failing, not '{status}'"),
            )
        })?),
    };
    let filter = HookFilter {
        company_id: number("company_id", query.company_id)?,
        project_id: number("project_id", query.project_id)?,
        search: text(query.q),
        event: text(query.event),
        state: wanted_state,
    };
    let (_, limit) = parse_page(None, query.limit.as_deref())?;
    // Hook ids are time-ordered: the cursor is the last id of the previous page.
    let cursor = match query
        .cursor
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
    {
        Some(c) if c.starts_with("hook_") && c.len() < 64 => Some(c),
        Some(c) => return Err(invalid_cursor(&c)),
        None => None,
    };
    Ok(Json(hooks_page(&state, filter, cursor, limit).await?))
}

/// One page of hooks, newest first, after the hook id `cursor`.
pub(crate) async fn hooks_page(
    state: &AppState,
    filter: HookFilter,
    cursor: Option<String>,
    limit: usize,
) -> Result<HookPage, ApiError> {
    let (page, total) = state
        .on_store(move |store| {
            Ok((
                store.list_hooks(&filter, cursor.as_deref(), limit)?,
                store.count_hooks(&filter)?,
            ))
        })
        .await?;
    Ok(HookPage {
        hooks: page.items.into_iter().map(HookOut::masked).collect(),
        next_cursor: page.next_cursor,
        total,
    })
}

/// One hook.
#[utoipa::path(get, path = "/api/v1/hooks/{id}", operation_id = "getHook", description = "One hook; its secret and authorization header masked.", tag = "hooks",
    params(("id" = String, Path, description = "The hook's id")),
    responses((status = 200, body = HookOut), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<HookOut>, ApiError> {
    Ok(Json(hook_out(&state, id).await?))
}

/// One hook, its secret masked.
pub(crate) async fn hook_out(state: &AppState, id: String) -> Result<HookOut, ApiError> {
    Ok(HookOut::masked(load(state, id).await?))
}

/// Changes a hook's endpoint, header, description, scope or status. Disabling a hook discards the
/// deliveries waiting for it.
#[utoipa::path(patch, path = "/api/v1/hooks/{id}", operation_id = "updateHook", description = "Changes a hook's endpoint, authorization header, description, scope, events or enabled state; fields left out stay as they are.", tag = "hooks", request_body = UpdateHookIn,
    params(("id" = String, Path, description = "The hook's id")),
    responses(
        (status = 200, body = HookOut),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    AppJson(body): AppJson<UpdateHookIn>,
) -> Result<Json<HookOut>, ApiError> {
    Ok(Json(update_hook(&state, id, body).await?))
}

/// Changes a hook (the API's and the admin pages' one way).
pub(crate) async fn update_hook(
    state: &AppState,
    id: String,
    body: UpdateHookIn,
) -> Result<HookOut, ApiError> {
    let existing = load(state, id.clone()).await?;
    let scope = if body.company_id.is_some() || body.project_id.is_some() {
        if existing.origin == HookOrigin::Subscription {
            return Err(unprocessable(
                "invalid_scope",
                "a subscription made through EPT_WebhookSubscribe has no scope",
            ));
        }
        Some(checked_scope(state, requested_scope(body.company_id, body.project_id)?).await?)
    } else {
        None
    };
    let target_url = match body.target_url {
        Some(url) => Some(checked_target(state, url.trim()).await?),
        None => None,
    };
    let filter = match body.filter {
        Some(filter) => Some(checked_filter(state, filter).await?),
        None => None,
    };
    let patch = HookPatch {
        target_url,
        authorization: body.authorization.map(checked_authorization).transpose()?,
        description: checked_description(body.description)?,
        scope,
        enabled: body.enabled,
        filter,
        rate_limit_per_second: body
            .rate_limit_per_second
            .map(checked_rate_limit)
            .transpose()?,
    };
    let hook_id = id.clone();
    let hook = state
        .on_store(move |store| store.update_hook(&hook_id, &patch))
        .await?
        .ok_or_else(|| unknown_hook(&id))?;
    state
        .capacity
        .set_rate_limit(&hook.id, hook.rate_limit_per_second);
    if patch_enabled_changed(&existing, &hook) {
        sync_tracking(state).await?;
        state.deliveries_waiting.notify_one();
    }
    if existing.filter != hook.filter {
        // What the old filter failed on waits for this one.
        rejudge(state, hook.id.clone(), hook.filter.clone(), None).await?;
    }
    tracing::info!(hook_id = %hook.id, "hook updated");
    Ok(HookOut::masked(hook))
}

fn patch_enabled_changed(before: &Hook, after: &Hook) -> bool {
    before.enabled != after.enabled
}

/// Deletes a hook. Its deliveries log stays until the retention window passes; what waits is discarded.
#[utoipa::path(delete, path = "/api/v1/hooks/{id}", operation_id = "deleteHook", description = "Deletes a hook; its waiting deliveries are discarded.", tag = "hooks",
    params(("id" = String, Path, description = "The hook's id")),
    responses((status = 200, body = Deleted), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Deleted>, ApiError> {
    delete_hook(&state, &id).await?;
    Ok(Json(Deleted { id, deleted: true }))
}

pub(crate) async fn delete_hook(state: &AppState, id: &str) -> Result<(), ApiError> {
    let hook_id = id.to_owned();
    if !state
        .on_store(move |store| store.delete_hook(&hook_id))
        .await?
    {
        return Err(unknown_hook(id));
    }
    sync_tracking(state).await?;
    tracing::info!(hook_id = %id, "hook deleted");
    Ok(())
}

/// Replaces the signing secret. The new secret is in this answer and never again; the old one keeps
/// signing beside it (two signatures per delivery) for the grace period, so receivers can switch
/// without losing a delivery.
#[utoipa::path(post, path = "/api/v1/hooks/{id}/rotate-secret", operation_id = "rotateHookSecret", description = "Makes a new signing secret; the previous one keeps signing beside it for the grace period given (default 24 h).", tag = "hooks",
    request_body(content = RotateSecretIn, description = "Optional"),
    params(("id" = String, Path, description = "The hook's id")),
    responses(
        (status = 200, description = "The hook, its new secret whole", body = HookOut),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<HookOut>, ApiError> {
    // The body is optional: no body means the default grace period.
    let body: RotateSecretIn = if body.iter().all(u8::is_ascii_whitespace) {
        RotateSecretIn::default()
    } else {
        parse_json(&body)?
    };
    Ok(Json(
        rotate_hook_secret(&state, id, body.grace_seconds.unwrap_or(DEFAULT_GRACE_SECS)).await?,
    ))
}

/// A new signing secret for the hook, in the answer whole; the old one signs beside it for `grace`
/// seconds.
pub(crate) async fn rotate_hook_secret(
    state: &AppState,
    id: String,
    grace: u64,
) -> Result<HookOut, ApiError> {
    if grace > MAX_GRACE_SECS {
        return Err(unprocessable(
            "invalid_grace",
            format!("grace_seconds must be at most {MAX_GRACE_SECS} (30 days)"),
        ));
    }
    let secret = generate_secret();
    let store = state.store.clone();
    let hook_id = id.clone();
    let new_secret = secret.clone();
    let until = now_ms() + grace as i64 * 1000;
    let hook = blocking(move || {
        store
            .rotate_secret(&hook_id, &new_secret, until)
            .map_err(ApiError::from)
    })
    .await?
    .ok_or_else(|| unknown_hook(&id))?;
    tracing::info!(hook_id = %id, grace_seconds = grace, "hook secret rotated");
    Ok(HookOut::with_secret(hook, secret))
}
