//! What each admin page shows: one template struct per page (templates in `templates/admin/`),
//! filled by `pages.rs` from the API's own answer types, and the small formatting helpers the
//! templates call (`self::utc`, `self::pretty`).

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde_json::Value;

use super::session::Flash;
use crate::http::backfills::BackfillOut;
use crate::http::catalogue::CatalogueOut;
use crate::http::filters::FilterTestOut;
use crate::http::grid::GridOut;
use crate::http::history::{DeliveryDetailOut, DeliveryPage, EventPage, HookSummaryOut};
use crate::http::hooks::HookOut;
use crate::http::nodes::NodesOut;
use crate::http::scripts::ScriptsOut;
use crate::store::ScopeName;

use super::i18n::escape_html;
pub use super::i18n::{lang, t, ta, ta2, tm, tn, Lang};

/// The languages of the switch every page shows.
pub fn languages() -> [Lang; 4] {
    Lang::ALL
}

/// The switch's link to `lang`, coming back to this page.
pub fn switch_href(lang: &Lang) -> String {
    let query = serde_urlencoded::to_string([("set", lang.code()), ("back", &super::i18n::here())])
        .unwrap_or_default();
    format!("/admin/language?{query}")
}

/// The messages the pages' script shows, in the page's language, as JSON for a
/// `<script type="application/json">` (escaped so that no `</script>` can end it).
pub fn script_messages() -> String {
    let messages: serde_json::Map<String, Value> = [
        "js-saving",
        "js-saved",
        "js-not-saved",
        "js-deliveries-failed",
        "js-more-failed",
        "js-delivery-failed",
        "js-copied",
        "js-select-and-copy",
        "backfill-status-preparing",
        "backfill-status-running",
        "backfill-status-done",
        "backfill-status-failed",
        "backfill-status-cancelled",
    ]
    .into_iter()
    .map(|key| (key.to_owned(), Value::String(t(key))))
    .collect();
    Value::Object(messages).to_string().replace('<', "\\u003c")
}

/// The page as HTML, or a plain 500 if a template fails (a bug: templates are checked at build).
pub fn render<T: Template>(page: &T) -> Response {
    match page.render() {
        Ok(body) => Html(body).into_response(),
        Err(e) => {
            tracing::error!("admin page failed to render: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page failed to render; it is logged",
            )
                .into_response()
        }
    }
}

/// `2026-11-24 08:15:02 UTC` from the API's RFC 3339 times: the pages say UTC, as the seeds do.
pub fn utc(rfc3339: &str) -> String {
    match crate::clock::parse_rfc3339_ms(rfc3339) {
        Some(ms) => {
            let text = crate::clock::rfc3339_ms(ms - ms % 1000);
            format!("{} UTC", text.trim_end_matches('Z').replacen('T', " ", 1))
        }
        None => rfc3339.to_owned(),
    }
}

/// JSON indented for reading; text that is not JSON, as it is.
/// A URL as HTML that a narrow column breaks after its slashes, dots and separators rather than
/// in the middle of a word (escaped here: render it with `|safe`).
pub fn breakable(url: &str) -> String {
    let mut html = String::with_capacity(url.len() + 16);
    for c in url.chars() {
        html.push_str(&escape_html(c.encode_utf8(&mut [0; 4])));
        if matches!(c, '/' | '.' | '?' | '&' | '=' | '-' | '_') {
            html.push_str("<wbr>");
        }
    }
    html
}

/// A duration in milliseconds, in the unit that reads best, with the language's decimal mark.
pub fn duration(ms: i64) -> String {
    if ms < 1_000 {
        format!("{ms} ms")
    } else {
        let seconds = format!("{:.1}", ms as f64 / 1000.0);
        match lang() {
            Lang::En => format!("{seconds} s"),
            _ => format!("{} s", seconds.replace('.', ",")),
        }
    }
}

/// A duration in seconds, as `duration` says it.
pub fn seconds(seconds: &f64) -> String {
    duration((seconds * 1000.0).round() as i64)
}

/// A text on one line, cut to a length a banner holds.
pub fn preview_text(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= 300 {
        return line;
    }
    let cut: String = line.chars().take(299).collect();
    format!("{cut}…")
}

/// A sample payload on one line, cut to a length a table cell holds.
pub fn preview(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() <= 400 {
        return text;
    }
    let cut: String = text.chars().take(399).collect();
    format!("{cut}…")
}

pub fn pretty(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    }
}

/// A response body: indented when it is JSON.
pub fn pretty_text(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .filter(|v| v.is_object() || v.is_array())
        .map(|v| pretty(&v))
        .unwrap_or_else(|| text.to_owned())
}

/// What a scope is called on the pages: `Acme Construction (company 1)`.
pub fn scope_label(hook: &HookOut, companies: &[ScopeName], projects: &[ScopeName]) -> String {
    let named = |list: &[ScopeName], id: i64, kind: &str| {
        let kind = ta(kind, "id", id);
        match list
            .iter()
            .find(|s| s.id == id)
            .and_then(|s| s.name.clone())
        {
            Some(name) => format!("{name} ({kind})"),
            None => kind,
        }
    };
    match (hook.company_id, hook.project_id) {
        (Some(id), _) => named(companies, id, "index-company-id"),
        (_, Some(id)) => named(projects, id, "index-project-id"),
        // A subscription has one trigger: what tells two of them apart.
        _ => match hook.events.first() {
            Some(trigger) => ta("scope-subscription-to", "trigger", trigger),
            None => t("scope-subscription"),
        },
    }
}

/// A hook as a line of the hooks tables.
pub struct HookRow {
    pub hook: HookOut,
    pub scope: String,
}

/// The project-level hooks of one project.
pub struct ProjectHooks {
    pub project_id: i64,
    pub label: String,
    pub rows: Vec<HookRow>,
}

/// The values of the "new hook" form, kept when it comes back with a warning.
#[derive(Default, serde::Deserialize)]
pub struct NewHookForm {
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub target_url: String,
    #[serde(default)]
    pub authorization: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Template)]
#[template(path = "admin/login.html")]
pub struct LoginPage {
    pub next: String,
    pub error: Option<String>,
    /// The file the generated token is kept in, as this herald names it.
    pub token_file: String,
}

#[derive(Template)]
#[template(path = "admin/error.html")]
pub struct ErrorPage {
    pub title: String,
    pub message: String,
}

#[derive(Template)]
#[template(path = "admin/index.html")]
pub struct IndexPage {
    pub csrf: String,
    pub flash: Option<Flash>,
    /// Every hook, whatever the search.
    pub total: u64,
    pub search: super::pages::HookSearch,
    /// The hooks a search found (or, past the most the page groups, every hook), a page at a time.
    pub found: Option<FoundHooks>,
    pub company_hooks: Vec<HookRow>,
    /// Project-level hooks, one group per project, in project order.
    pub project_groups: Vec<ProjectHooks>,
    pub subscriptions: Vec<HookRow>,
    pub companies: Vec<ScopeName>,
    pub projects: Vec<ScopeName>,
    pub form: NewHookForm,
}

/// A page of the hooks a search found.
pub struct FoundHooks {
    pub total: u64,
    pub rows: Vec<HookRow>,
    /// The link to the next page, if there is one.
    pub next: Option<String>,
}

impl IndexPage {
    /// Whether the scope field was left on this company or project.
    pub fn selected(&self, kind: &str, id: &i64) -> bool {
        self.form.scope == format!("{kind}:{id}")
    }
}

/// The filters of the events section, as the query string holds them.
#[derive(Default, serde::Deserialize)]
pub struct HookQuery {
    pub only_failures: Option<String>,
    pub status: Option<String>,
    pub resource: Option<String>,
    pub event_type: Option<String>,
    pub events_cursor: Option<String>,
    /// Prefills the recovery form: when the hook started failing, before it was re-enabled.
    pub recover_since: Option<String>,
}

#[derive(Template)]
#[template(path = "admin/hook.html")]
pub struct HookPage {
    pub csrf: String,
    pub flash: Option<Flash>,
    pub hook: HookOut,
    pub hook_id: String,
    pub scope: String,
    /// The endpoint field: the hook's, or what was typed when it was refused.
    pub endpoint_value: String,
    pub summary: HookSummaryOut,
    pub grid: GridOut,
    pub deliveries: DeliveryPage,
    pub only_failures: bool,
    pub events: EventPage,
    pub status_filter: String,
    pub resource_filter: String,
    pub event_type_filter: String,
    /// Set when the events section shows an older page.
    pub events_cursor: Option<String>,
    /// The query string of this page, for links that keep the other filters.
    pub events_more_href: Option<String>,
    /// Where a retry brings the browser back to.
    pub return_to: String,
    /// The recovery form's "since", as a `datetime-local` value in UTC.
    pub recover_since: String,
    /// The filter field: the hook's filter, or what was typed when it was tried or refused.
    pub filter_value: String,
    /// What trying the typed filter on the hook's samples found.
    pub filter_test: Option<FilterTestOut>,
    /// The hook's backfills, newest first.
    pub backfills: Vec<BackfillOut>,
    /// The triggers the hook selects: what a backfill can render.
    pub backfill_triggers: Vec<String>,
    /// The backfill form's query: empty, or what was typed when it was refused.
    pub backfill_query: String,
}

impl BackfillOut {
    /// Whether it still moves (the page follows it).
    pub fn moving(&self) -> bool {
        self.status == "running" || self.status == "preparing"
    }
}

pub const EVENT_STATUSES: [&str; 6] = [
    "pending",
    "delivering",
    "delivered",
    "retrying",
    "failed",
    "discarded",
];

impl HookPage {
    pub fn statuses(&self) -> &'static [&'static str] {
        &EVENT_STATUSES
    }
}

/// The entries of a deliveries page and the link to the next; shared by the hook page, the
/// fragment the script appends and the page without script.
#[derive(Template)]
#[template(path = "admin/deliveries_fragment.html")]
pub struct DeliveriesFragment {
    pub hook_id: String,
    pub deliveries: DeliveryPage,
    pub only_failures: bool,
}

#[derive(Template)]
#[template(path = "admin/deliveries_page.html")]
pub struct DeliveriesPage {
    pub csrf: String,
    pub hook_id: String,
    pub deliveries: DeliveryPage,
    pub only_failures: bool,
}

#[derive(Template)]
#[template(path = "admin/delivery_fragment.html")]
pub struct DeliveryFragment {
    pub detail: DeliveryDetailOut,
}

#[derive(Template)]
#[template(path = "admin/delivery_page.html")]
pub struct DeliveryDetailPage {
    pub csrf: String,
    pub hook_id: String,
    pub detail: DeliveryDetailOut,
}

#[derive(Template)]
#[template(path = "admin/scripts.html")]
pub struct ScriptsPage {
    pub csrf: String,
    pub scripts: ScriptsOut,
    pub catalogue: CatalogueOut,
    /// The herald processes of the database: whose scripts render events is the consumer's.
    pub nodes: NodesOut,
}

impl ScriptsPage {
    pub fn errors(&self) -> usize {
        self.scripts
            .scripts
            .iter()
            .filter(|s| s.status == "error")
            .count()
    }
}

/// Whether two words are the same (the templates compare a loop's word with a filter).
pub fn same(a: &str, b: &str) -> bool {
    a == b
}

/// The first 12 characters of a content hash: enough to tell versions apart on a page.
pub fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// How an attempt's outcome reads on the page.
pub fn outcome_label(outcome: &str) -> String {
    t(match outcome {
        "success" => "outcome-success",
        "http_error" => "outcome-http-error",
        "timeout" => "outcome-timeout",
        "connection_error" => "outcome-connection-error",
        "refused" => "outcome-refused",
        _ => "outcome-failed",
    })
}

pub fn outcome_class(outcome: &str) -> &'static str {
    if outcome == "success" {
        "badge-success"
    } else {
        "badge-failure"
    }
}

/// The colour of an event status: green delivered, red failed, amber retrying, blue waiting.
/// An event's status as the pages say it, capitalised like the deliveries log's outcomes.
pub fn status_label(status: &str) -> String {
    t(match status {
        "pending" => "status-pending",
        "delivering" => "status-delivering",
        "delivered" => "status-delivered",
        "retrying" => "status-retrying",
        "failed" => "status-failed",
        "discarded" => "status-discarded",
        _ => "status-unknown",
    })
}

/// A backfill's status as the pages say it.
pub fn backfill_status_label(status: &str) -> String {
    match status {
        "preparing" => t("backfill-status-preparing"),
        "running" => t("backfill-status-running"),
        "done" => t("backfill-status-done"),
        "failed" => t("backfill-status-failed"),
        "cancelled" => t("backfill-status-cancelled"),
        other => other.to_owned(),
    }
}

/// Why a hook is disabled, in the page's language: the store keeps the reason in English (the
/// API shows it as it is), and the pages know its three forms.
pub fn disabled_reason_label(reason: &str) -> String {
    if reason == "disabled by an administrator" {
        return t("disabled-by-administrator");
    }
    if reason == "the target answered 410 Gone" {
        return t("disabled-gone");
    }
    let failing = reason
        .strip_prefix("every attempt failed since ")
        .and_then(|rest| rest.strip_suffix(" attempts)"))
        .and_then(|rest| rest.split_once(" ("));
    match failing {
        Some((since, count)) if count.parse::<u64>().is_ok() => {
            ta2("disabled-failing", "since", utc(since), "count", count)
        }
        _ => reason.to_owned(),
    }
}

/// What a script is for, as the scripts page says it.
pub fn script_kind_label(kind: &str) -> String {
    match kind {
        "body" => t("scripts-kind-body"),
        "notification" => t("scripts-kind-notification"),
        other => other.to_owned(),
    }
}

/// A change's kind (`create`, `update`, `delete`) as the resource grid names it.
pub fn event_type_label(event_type: &str) -> String {
    match event_type {
        "create" => t("hook-grid-create"),
        "update" => t("hook-grid-update"),
        "delete" => t("hook-grid-delete"),
        other => other.to_owned(),
    }
}

pub fn status_class(status: &str) -> &'static str {
    match status {
        "delivered" => "badge-success",
        "failed" => "badge-failure",
        "retrying" => "badge-warning",
        "discarded" => "badge-muted",
        _ => "badge-info",
    }
}

/// A parameter or a body field of an operation, as the API reference lists it.
pub struct ApiField {
    pub name: String,
    /// `path`, `query` or `body`.
    pub location: String,
    pub required: bool,
    pub description: String,
}

/// One operation of the API, as the reference page shows it.
pub struct ApiOperation {
    pub method: String,
    pub path: String,
    pub id: String,
    pub summary: String,
    pub description: String,
    /// Takes no token.
    pub public: bool,
    pub fields: Vec<ApiField>,
    /// Status and what it means.
    pub responses: Vec<(String, String)>,
}

/// The operations of one tag.
pub struct ApiSection {
    pub tag: String,
    pub description: String,
    pub operations: Vec<ApiOperation>,
}

/// The OpenAPI document as a page to read: what the "API" link opens.
#[derive(Template)]
#[template(path = "admin/api.html")]
pub struct ApiReferencePage {
    pub csrf: String,
    pub description: String,
    pub sections: Vec<ApiSection>,
}

impl ApiReferencePage {
    /// The page of `document` (the served OpenAPI document, as JSON): its tags in their order,
    /// each with its operations in path order.
    pub fn of(csrf: String, document: &Value) -> ApiReferencePage {
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let schema_of = |reference: &Value| -> Option<Value> {
            let name = reference.as_str()?.rsplit('/').next()?;
            document["components"]["schemas"].get(name).cloned()
        };
        let mut sections: Vec<ApiSection> = document["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|tag| ApiSection {
                tag: text(&tag["name"]),
                description: text(&tag["description"]),
                operations: Vec::new(),
            })
            .collect();
        for (path, item) in document["paths"].as_object().into_iter().flatten() {
            for method in ["get", "post", "put", "patch", "delete"] {
                let Some(operation) = item.get(method) else {
                    continue;
                };
                let mut fields: Vec<ApiField> = operation["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| ApiField {
                        name: text(&p["name"]),
                        location: text(&p["in"]),
                        required: p["required"].as_bool().unwrap_or(false),
                        description: text(&p["description"]),
                    })
                    .collect();
                let body = &operation["requestBody"]["content"]["application/json"]["schema"];
                if let Some(schema) = schema_of(&body["$ref"]) {
                    let required: Vec<&str> = schema["required"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    for (name, property) in schema["properties"].as_object().into_iter().flatten() {
                        fields.push(ApiField {
                            name: name.clone(),
                            location: "body".into(),
                            required: required.contains(&name.as_str()),
                            description: text(&property["description"]),
                        });
                    }
                }
                let responses = operation["responses"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(status, response)| (status.clone(), text(&response["description"])))
                    .collect();
                let public = operation["security"].as_array().is_some_and(|s| {
                    s.iter()
                        .all(|r| r.as_object().is_some_and(|o| o.is_empty()))
                });
                let tag = text(&operation["tags"][0]);
                let entry = ApiOperation {
                    method: method.to_uppercase(),
                    path: path.clone(),
                    id: text(&operation["operationId"]),
                    summary: text(&operation["summary"]),
                    description: text(&operation["description"]),
                    public,
                    fields,
                    responses,
                };
                match sections.iter_mut().find(|s| s.tag == tag) {
                    Some(section) => section.operations.push(entry),
                    None => sections.push(ApiSection {
                        tag,
                        description: String::new(),
                        operations: vec![entry],
                    }),
                }
            }
        }
        sections.retain(|s| !s.operations.is_empty());
        ApiReferencePage {
            csrf,
            description: text(&document["info"]["description"]),
            sections,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reasons_the_store_gives_read_as_the_pages_say_them() {
        assert_eq!(
            disabled_reason_label("disabled by an administrator"),
            "disabled by an administrator"
        );
        assert_eq!(
            disabled_reason_label("the target answered 410 Gone"),
            "the target answered 410 Gone"
        );
        assert_eq!(
            disabled_reason_label(
                "every attempt failed since 2026-11-24T08:15:02.120Z (7 attempts)"
            ),
            "every attempt failed since 2026-11-24 08:15:02 UTC (7 attempts)"
        );
        // A reason the pages do not know is shown as it is.
        assert_eq!(disabled_reason_label("moved away"), "moved away");
    }
}
