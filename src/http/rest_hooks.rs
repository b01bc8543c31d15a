//! The REST hooks endpoints, with the CRM's names and Zapier's semantics: subscribe a target URL to a
//! trigger, unsubscribe, and sample payloads (perform-list).

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use utoipa::{IntoParams, ToSchema};

use super::openapi::ErrorBody;
use super::{blocking, checked_target, ApiError, AppJson, AppQuery, AppState, Caller};
use crate::clock::rfc3339_ms;
use crate::config::Role;
use crate::delivery::signing::generate_secret;
use crate::events::{sample_payloads, RenderError};
use crate::store::{HookOrigin, NewHook, Scope};

/// The most samples perform-list returns, and its default.
const MAX_SAMPLES: usize = 100;

#[derive(Deserialize, ToSchema)]
pub struct SubscribeIn {
    /// The trigger to receive.
    event: Option<String>,
    /// Where to POST each event (`targetUrl`, `hookUrl` and `url`, as Zapier's example sends it,
    /// are accepted too).
    #[serde(alias = "targetUrl", alias = "hookUrl", alias = "url")]
    target_url: Option<String>,
    /// Only events this rhai expression returns true for are delivered; it sees `payload`,
    /// `event` and `change`. One that does not compile is refused with its line and column.
    filter: Option<String>,
    /// The most deliveries per second to send to the target (more than 0, at most 10,000).
    rate_limit_per_second: Option<f64>,
}

/// Who the token is: an integration's connection test.
#[derive(Serialize, ToSchema)]
pub struct MeOut {
    /// The token's name (from the configuration; `admin` for the admin token).
    name: String,
    /// `admin` or `subscribe`.
    role: String,
}

/// The token's name and role.
#[utoipa::path(get, path = "/EPT_WebhookMe", operation_id = "getTokenIdentity", description = "REST hooks: an integration's connection test. Any valid token; answers its name and role and changes nothing.", tag = "rest-hooks",
    responses((status = 200, body = MeOut)))]
pub async fn me(Extension(caller): Extension<Caller>) -> Json<MeOut> {
    Json(MeOut {
        name: caller.name,
        role: match caller.role {
            Role::Admin => "admin",
            Role::Subscribe => "subscribe",
        }
        .to_owned(),
    })
}

#[derive(Serialize, ToSchema)]
pub struct SubscriptionOut {
    id: String,
    /// The id again, under the name CRM integrations built on this pattern read.
    #[serde(rename = "codeWebhookSubscription")]
    code_webhook_subscription: String,
    event: String,
    target_url: String,
    /// The signing secret; shown here once.
    secret: String,
    created_at: String,
}

fn required(value: Option<String>, name: &str) -> Result<String, ApiError> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
        _ => Err(ApiError::missing_field(name)),
    }
}

fn known_trigger(state: &AppState, event: &str) -> Result<(), ApiError> {
    if state.registry.current().body(event).is_some() {
        Ok(())
    } else {
        Err(ApiError::not_found(
            "unknown_trigger",
            format!("no trigger named '{event}' (no GetWebhookResponseBody_{event}.rhai)"),
        ))
    }
}

/// Subscribes a target URL to a trigger (REST hooks). The secret is in this answer only.
#[utoipa::path(post, path = "/EPT_WebhookSubscribe", operation_id = "createSubscription", description = "REST hooks: subscribes a target URL to one trigger. Answers the subscription's id (also as codeWebhookSubscription). A subscribe token may call it.", tag = "rest-hooks", request_body = SubscribeIn,
    responses(
        (status = 201, body = SubscriptionOut),
        (status = 404, description = "Unknown trigger", body = ErrorBody),
        (status = 422, description = "Missing field or bad target URL", body = ErrorBody),
    ))]
pub async fn subscribe(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    AppJson(body): AppJson<SubscribeIn>,
) -> Result<(StatusCode, Json<SubscriptionOut>), ApiError> {
    let event = required(body.event, "event")?;
    let target_url = required(body.target_url, "target_url")?;
    known_trigger(&state, &event)?;
    let url = checked_target(&state, &target_url).await?;
    let filter = super::filters::checked_filter(&state, body.filter).await?;
    let rate_limit_per_second = super::hooks::checked_rate_limit(body.rate_limit_per_second)?;
    let store = state.store.clone();
    let new = NewHook {
        target_url: url,
        secret: generate_secret(),
        authorization: None,
        description: String::new(),
        origin: HookOrigin::Subscription,
        scope: Scope::Everything,
        enabled: true,
        events: vec![event.clone()],
        made_by: Some(caller.name),
        filter,
        rate_limit_per_second,
    };
    let hook = blocking(move || store.create_hook(new).map_err(ApiError::from)).await?;
    state
        .capacity
        .set_rate_limit(&hook.id, hook.rate_limit_per_second);
    tracing::info!(hook_id = %hook.id, %event, target = %hook.target_url, "subscribed");
    Ok((
        StatusCode::CREATED,
        Json(SubscriptionOut {
            code_webhook_subscription: hook.id.clone(),
            id: hook.id,
            event,
            target_url: hook.target_url,
            secret: hook.secret,
            created_at: rfc3339_ms(hook.created_at),
        }),
    ))
}

#[derive(Deserialize, ToSchema)]
pub struct UnsubscribeIn {
    /// The subscription's id (`codeWebhookSubscription` is accepted too).
    #[serde(alias = "codeWebhookSubscription")]
    #[schema(value_type = Option<String>)]
    id: Option<Value>,
}

#[derive(Serialize, ToSchema)]
pub struct UnsubscribedOut {
    id: String,
    deleted: bool,
}

/// Removes a subscription. A subscribe-only token removes only the subscriptions it made; any
/// other id answers 404, as an unknown one does.
#[utoipa::path(post, path = "/EPT_WebhookUnsubscribe", operation_id = "deleteSubscription", description = "REST hooks: removes a subscription by the id in the body. A subscribe token removes only the subscriptions it made.", tag = "rest-hooks", request_body = UnsubscribeIn,
    responses(
        (status = 200, body = UnsubscribedOut),
        (status = 404, description = "Unknown subscription", body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
pub async fn unsubscribe(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    AppJson(body): AppJson<UnsubscribeIn>,
) -> Result<Json<UnsubscribedOut>, ApiError> {
    let id = match body.id {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                "the field 'id' must be the subscription's id, a string",
            ))
        }
        None => return Err(ApiError::missing_field("id")),
    };
    delete_subscription(state, caller, id).await
}

/// Removes a subscription, by its id in the path (a subscribe-only token: only its own).
#[utoipa::path(delete, path = "/EPT_WebhookSubscribe/{id}", operation_id = "deleteSubscriptionById", description = "REST hooks: removes a subscription by the id in the path. A subscribe token removes only the subscriptions it made.", tag = "rest-hooks",
    params(("id" = String, Path, description = "The subscription's id")),
    responses((status = 200, body = UnsubscribedOut), (status = 404, body = ErrorBody)))]
pub async fn unsubscribe_by_path(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<UnsubscribedOut>, ApiError> {
    delete_subscription(state, caller, id).await
}

async fn delete_subscription(
    state: AppState,
    caller: Caller,
    id: String,
) -> Result<Json<UnsubscribedOut>, ApiError> {
    let hook_id = id.clone();
    let deleted = state
        .on_store(move |store| {
            let made_by = match caller.role {
                Role::Admin => None,
                Role::Subscribe => Some(caller.name.as_str()),
            };
            let deleted = match made_by {
                None => store.delete_hook(&hook_id)?,
                Some(name) => store.delete_subscription_made_by(&hook_id, name)?,
            };
            // One herald removed on a 410 existed: its unsubscribe is acknowledged, once.
            Ok(deleted || store.acknowledge_gone_subscription(&hook_id, made_by)?)
        })
        .await?;
    if !deleted {
        return Err(ApiError::not_found(
            "unknown_subscription",
            format!("no subscription with id '{id}'"),
        ));
    }
    tracing::info!(hook_id = %id, "unsubscribed");
    Ok(Json(UnsubscribedOut { id, deleted: true }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PerformListQuery {
    /// The trigger.
    event: Option<String>,
    /// 1 to 100, or -1 for as many as there are (Zapier's "no limit"); default 100.
    #[param(value_type = Option<i32>, minimum = -1, maximum = 100)]
    limit: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct PerformListIn {
    event: Option<String>,
    /// 1 to 100, or -1 for as many as there are (Zapier's "no limit"); default 100.
    #[schema(value_type = Option<i32>, minimum = -1, maximum = 100)]
    limit: Option<Value>,
}

/// Sample payloads of a trigger, newest first, in the shape of live deliveries.
#[utoipa::path(get, path = "/EPT_WebhookPerformList", operation_id = "listSamplePayloads", description = "REST hooks perform-list: sample payloads of a trigger, newest first, built by its body script from existing rows.", tag = "rest-hooks", params(PerformListQuery),
    responses(
        (status = 200, description = "Sample payloads", body = Vec<Object>),
        (status = 404, description = "Unknown trigger", body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 500, description = "The body script failed", body = ErrorBody),
    ))]
pub async fn perform_list_query(
    State(state): State<AppState>,
    AppQuery(query): AppQuery<PerformListQuery>,
) -> Result<Json<Vec<Value>>, ApiError> {
    // A query string's limit is text; a whole number in it counts as the number.
    let limit = parse_limit(query.limit.map(|text| {
        text.trim()
            .parse::<i64>()
            .map_or(Value::String(text), Value::from)
    }))?;
    perform_list(state, required(query.event, "event")?, limit).await
}

/// Sample payloads of a trigger, with the trigger in the body.
#[utoipa::path(post, path = "/EPT_WebhookPerformList", operation_id = "listSamplePayloadsWithBody", description = "REST hooks perform-list with the trigger and limit in a JSON body.", tag = "rest-hooks", request_body = PerformListIn,
    responses(
        (status = 200, description = "Sample payloads", body = Vec<Object>),
        (status = 404, description = "Unknown trigger", body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 500, description = "The body script failed", body = ErrorBody),
    ))]
pub async fn perform_list_body(
    State(state): State<AppState>,
    AppJson(body): AppJson<PerformListIn>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let limit = parse_limit(body.limit)?;
    perform_list(state, required(body.event, "event")?, limit).await
}

/// Zapier's "no limit".
const NO_LIMIT: i64 = -1;

fn parse_limit(limit: Option<Value>) -> Result<usize, ApiError> {
    let parsed = match &limit {
        None => return Ok(MAX_SAMPLES),
        Some(Value::Number(n)) if n.as_i64() == Some(NO_LIMIT) => return Ok(MAX_SAMPLES),
        Some(Value::Number(n)) => n.as_u64(),
        Some(_) => None,
    };
    match parsed {
        Some(n) if (1..=MAX_SAMPLES as u64).contains(&n) => Ok(n as usize),
        _ => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_limit",
            format!("limit must be a whole number from 1 to {MAX_SAMPLES}, or -1 for as many as there are (in a JSON body, a number, not a string)"),
        )),
    }
}

async fn perform_list(
    state: AppState,
    event: String,
    limit: usize,
) -> Result<Json<Vec<Value>>, ApiError> {
    known_trigger(&state, &event)?;
    let scripts = state.registry.current();
    let sandboxes = state.sandboxes.clone();
    let samples = blocking(move || {
        sandboxes
            .with(|sandbox| sample_payloads(sandbox, &scripts, &event, limit))
            .map_err(ApiError::from)
    })
    .await?;
    match samples {
        Ok(samples) => Ok(Json(samples)),
        Err(RenderError::UnknownTrigger(name)) => Err(ApiError::not_found(
            "unknown_trigger",
            format!("no trigger named '{name}'"),
        )),
        Err(RenderError::Script(diagnostic)) => {
            tracing::warn!("perform-list: {diagnostic}");
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "script_failed",
                format!("the body script failed: {diagnostic}"),
            ))
        }
    }
}
