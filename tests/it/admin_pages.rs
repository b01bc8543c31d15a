//! The admin pages over plain HTTP: sign-in, sessions, and the protections a browser test cannot
//! show (forged forms, cross-site posts, API calls by cookie without the CSRF header).

use std::time::Duration;

use herald::config::{ApiToken, Role};
use reqwest::redirect::Policy;
use reqwest::{Client, Response};
use serde_json::{json, Value};

use crate::support::*;

const SUBSCRIBE_TOKEN: &str = "subscribe-only-token";
const STEP: Duration = Duration::from_secs(10);

pub(crate) fn no_redirects() -> Client {
    Client::builder()
        .redirect(Policy::none())
        .timeout(STEP)
        .build()
        .unwrap()
}

async fn start() -> (tempfile::TempDir, TestHerald) {
    let dir = tempfile::tempdir().unwrap();
    let scripts = demo_scripts(dir.path());
    let mut config = test_config(dir.path(), &scripts);
    config.api_tokens.push(ApiToken {
        name: "zapier".into(),
        token: SUBSCRIBE_TOKEN.into(),
        role: Role::Subscribe,
    });
    let herald = TestHerald::start(config).await;
    (dir, herald)
}

pub(crate) async fn sign_in_with(herald: &TestHerald, token: &str) -> Response {
    no_redirects()
        .post(herald.url("/admin/login"))
        .form(&[("token", token), ("next", "/admin")])
        .send()
        .await
        .unwrap()
}

/// Signs in with the admin token; gives the `Cookie` header value of the session.
pub(crate) async fn session_cookie(herald: &TestHerald) -> String {
    let response = sign_in_with(herald, TOKEN).await;
    assert_eq!(response.status(), 303);
    let set_cookie = response
        .headers()
        .get("set-cookie")
        .expect("a session cookie")
        .to_str()
        .unwrap()
        .to_owned();
    set_cookie.split(';').next().unwrap().to_owned()
}

/// The value of `name="csrf"` (or the csrf-token meta tag) in a page.
pub(crate) fn csrf_of(page: &str) -> String {
    let at = page
        .find("name=\"csrf\" value=\"")
        .map(|i| i + "name=\"csrf\" value=\"".len())
        .or_else(|| {
            page.find("name=\"csrf-token\" content=\"")
                .map(|i| i + "name=\"csrf-token\" content=\"".len())
        })
        .expect("a CSRF token in the page");
    page[at..].split('"').next().unwrap().to_owned()
}

pub(crate) async fn page(herald: &TestHerald, cookie: &str, path: &str) -> (u16, String) {
    let response = no_redirects()
        .get(herald.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn hook_count(herald: &TestHerald) -> usize {
    let (status, hooks) = herald.get("/api/v1/hooks").await;
    assert_eq!(status, 200, "{hooks}");
    hooks["hooks"].as_array().expect("a hooks list").len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_out_visitors_are_sent_to_sign_in_and_every_page_carries_security_headers() {
    let (_dir, herald) = start().await;
    let response = no_redirects()
        .get(herald.url("/admin/scripts?x=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers()["location"],
        "/admin/login?next=%2Fadmin%2Fscripts%3Fx%3D1"
    );
    for name in [
        "content-security-policy",
        "x-frame-options",
        "x-content-type-options",
        "referrer-policy",
    ] {
        assert!(response.headers().contains_key(name), "{name} is missing");
    }
    assert_eq!(response.headers()["x-frame-options"], "DENY");

    // The stylesheet and the script are public; the sign-in page needs nothing.
    let css = no_redirects()
        .get(herald.url("/admin/static/admin.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(css.status(), 200);
    assert!(css.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
    let login = no_redirects()
        .get(herald.url("/admin/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    assert!(login.text().await.unwrap().contains("name=\"token\""));

    // A sign-in may not send the browser elsewhere afterwards.
    let response = no_redirects()
        .post(herald.url("/admin/login"))
        .form(&[("token", TOKEN), ("next", "https://evil.example/")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/admin");
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_admin_token_signs_in_and_the_session_ends_at_sign_out() {
    let (_dir, herald) = start().await;

    let wrong = sign_in_with(&herald, "not-a-token").await;
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());
    assert!(wrong
        .text()
        .await
        .unwrap()
        .contains("That token is not valid."));

    let empty = sign_in_with(&herald, "  ").await;
    assert_eq!(empty.status(), 422);
    assert!(empty.text().await.unwrap().contains("Enter an API token."));

    let subscribe_only = sign_in_with(&herald, SUBSCRIBE_TOKEN).await;
    assert_eq!(subscribe_only.status(), 403);
    assert!(subscribe_only.headers().get("set-cookie").is_none());
    assert!(subscribe_only
        .text()
        .await
        .unwrap()
        .contains("may only use the REST hooks endpoints"));

    let admin = sign_in_with(&herald, TOKEN).await;
    assert_eq!(admin.status(), 303);
    assert_eq!(admin.headers()["location"], "/admin");
    let set_cookie = admin.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set_cookie.starts_with("herald_session="), "{set_cookie}");
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_owned();

    let (status, index) = page(&herald, &cookie, "/admin").await;
    assert_eq!(status, 200);
    assert!(index.contains("Webhooks"));

    // Signing out needs the form's CSRF token too, then the cookie no longer opens anything.
    let csrf = csrf_of(&index);
    let forged = no_redirects()
        .post(herald.url("/admin/logout"))
        .header("cookie", &cookie)
        .form(&[("csrf", "guess")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let (status, _) = page(&herald, &cookie, "/admin").await;
    assert_eq!(status, 200, "a forged sign-out must not end the session");

    let out = no_redirects()
        .post(herald.url("/admin/logout"))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    assert!(out.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let (status, _) = page(&herald, &cookie, "/admin").await;
    assert_eq!(status, 303);
    let api = no_redirects()
        .get(herald.url("/api/v1/hooks"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 401);
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_without_the_csrf_token_or_from_another_site_change_nothing() {
    let (_dir, herald) = start().await;
    let cookie = session_cookie(&herald).await;
    let (_, index) = page(&herald, &cookie, "/admin").await;
    let csrf = csrf_of(&index);
    let form = |csrf: &str| {
        vec![
            ("csrf", csrf.to_owned()),
            ("scope", "company:1".to_owned()),
            ("target_url", "http://127.0.0.1:9/hook".to_owned()),
            ("authorization", String::new()),
            ("description", String::new()),
        ]
    };

    let forged = no_redirects()
        .post(herald.url("/admin/hooks"))
        .header("cookie", &cookie)
        .form(&form("not-the-token"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert_eq!(hook_count(&herald).await, 0);

    let cross_site = no_redirects()
        .post(herald.url("/admin/hooks"))
        .header("cookie", &cookie)
        .header("origin", "https://evil.example")
        .form(&form(&csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), 403);
    assert!(cross_site.text().await.unwrap().contains("another site"));
    assert_eq!(hook_count(&herald).await, 0);

    let own_site = no_redirects()
        .post(herald.url("/admin/hooks"))
        .header("cookie", &cookie)
        .header("origin", herald.url(""))
        .form(&form(&csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(own_site.status(), 303, "{:?}", own_site.text().await);
    assert_eq!(hook_count(&herald).await, 1);

    // A bad URL in the form is said on the page, in words, and nothing is created.
    let mut bad = form(&csrf);
    bad[2].1 = "not a url".into();
    let response = no_redirects()
        .post(herald.url("/admin/hooks"))
        .header("cookie", &cookie)
        .form(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let text = response.text().await.unwrap();
    assert!(text.contains("target_url"), "{text}");
    assert_eq!(hook_count(&herald).await, 1);
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_takes_the_session_cookie_only_with_the_csrf_header_for_changes() {
    let (_dir, herald) = start().await;
    let hook = herald
        .create_hook(
            json!({"target_url": "http://127.0.0.1:9/hook", "company_id": 1, "events": []}),
        )
        .await;
    let id = hook["id"].as_str().unwrap();
    let cookie = session_cookie(&herald).await;
    let (_, hook_page) = page(&herald, &cookie, &format!("/admin/hooks/{id}")).await;
    let csrf = csrf_of(&hook_page);
    let client = no_redirects();

    let read = client
        .get(herald.url("/api/v1/hooks"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);

    let grid_cell = herald.url(&format!("/api/v1/hooks/{id}/grid/Deal/create"));
    let without = client
        .put(&grid_cell)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(without.status(), 403);
    let error: Value = without.json().await.unwrap();
    assert_eq!(error["error"]["code"], "csrf_failed", "{error}");

    let with = client
        .put(&grid_cell)
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert!(with.status().is_success(), "{}", with.status());
    let (_, grid) = herald.get(&format!("/api/v1/hooks/{id}/grid")).await;
    let deal = grid["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == "Deal")
        .unwrap()
        .clone();
    assert_eq!(deal["create"], true, "{grid}");

    // A subscribe-only token still reaches nothing of the admin API.
    let refused = client
        .get(herald.url("/api/v1/hooks"))
        .bearer_auth(SUBSCRIBE_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hooks_summary_counts_its_deliveries_by_outcome() {
    let (_dir, herald) = start().await;
    let receiver = TestReceiver::start().await;
    receiver.queue(Answer::status(500));
    let hook = herald
        .create_hook(json!({"target_url": receiver.url("/hook"), "company_id": 1, "events": ["Deal.create"]}))
        .await;
    let id = hook["id"].as_str().unwrap();

    let (status, empty) = herald.get(&format!("/api/v1/hooks/{id}/summary")).await;
    assert_eq!(status, 200, "{empty}");
    assert_eq!(empty["delivered"], 0);
    assert_eq!(empty["failed"], 0);
    assert!(empty["last_delivery"].is_null(), "{empty}");

    herald.app().execute(
        "INSERT INTO \"Deal\" (title, amount, stage, is_project, company_id, project_id)
             VALUES ('Summary deal', 10, 'lead', 0, 1, 10)",
        &[],
    );
    // The first attempt fails (500), the retry succeeds.
    receiver.wait_for(2, STEP).await;
    let path = format!("/api/v1/hooks/{id}/summary");
    let mut summary = Value::Null;
    for _ in 0..100 {
        summary = herald.get(&path).await.1;
        if summary["delivered"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        summary["delivered"], 1,
        "the retry is counted as delivered: {summary}"
    );
    assert_eq!(summary["failed"], 0, "{summary}");
    assert_eq!(summary["pending"], 0, "{summary}");
    assert_eq!(summary["last_delivery"]["outcome"], "success", "{summary}");

    let (status, missing) = herald.get("/api/v1/hooks/hook_nope/summary").await;
    assert_eq!(status, 404, "{missing}");
    assert_eq!(missing["error"]["code"], "unknown_hook", "{missing}");
    receiver.stop();
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhooks_page_lists_company_hooks_then_project_hooks_project_by_project() {
    let (_dir, herald) = start().await;
    for (scope, path) in [
        (json!({"project_id": 20}), "/hafen-a"),
        (json!({"company_id": 1}), "/acme"),
        (json!({"project_id": 10}), "/lyon"),
        (json!({"project_id": 20}), "/hafen-b"),
    ] {
        let mut body = json!({"target_url": format!("http://127.0.0.1:9{path}"), "events": []});
        body.as_object_mut()
            .unwrap()
            .extend(scope.as_object().unwrap().clone());
        herald.create_hook(body).await;
    }
    let cookie = session_cookie(&herald).await;
    let (status, index) = page(&herald, &cookie, "/admin").await;
    assert_eq!(status, 200);
    // URLs carry line-break opportunities after their separators.
    let index = index.replace("<wbr>", "");
    let at = |text: &str| {
        index
            .find(text)
            .unwrap_or_else(|| panic!("{text} is not on the page"))
    };
    // Company-level first, then one heading per project in project order, each with its hooks.
    assert!(at("/acme") < at("Project-level hooks"));
    let lyon = at("<h3 class=\"project-group\">Lyon Part-Dieu tower (project 10)</h3>");
    let hafen = at("<h3 class=\"project-group\">Hafen City offices (project 20)</h3>");
    assert!(lyon < at("/lyon") && at("/lyon") < hafen);
    assert!(hafen < at("/hafen-a") && hafen < at("/hafen-b"));
    assert!(at("REST hooks subscriptions") > at("/hafen-b"));
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_tokens_is_slowed_to_a_few_tries_a_minute_per_address() {
    let (_dir, herald) = start().await;
    let client = no_redirects();
    // Ten wrong guesses are told they are wrong.
    for i in 0..10 {
        let r = client
            .get(herald.url("/api/v1/hooks"))
            .bearer_auth(format!("guess-{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    // The eleventh, and then anything from this address, even the right token or the sign-in
    // form, waits: a guesser learns nothing more for a while.
    let r = client
        .get(herald.url("/api/v1/hooks"))
        .bearer_auth("guess-10")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=6).contains(&wait), "Retry-After: {wait}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    let right = client
        .get(herald.url("/api/v1/hooks"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 429);
    let form = sign_in_with(&herald, TOKEN).await;
    assert_eq!(form.status(), 429);
    assert!(form.text().await.unwrap().contains("Too many wrong tokens"));
    // Requests without a token are not guesses and are answered as usual.
    let r = client
        .get(herald.url("/api/v1/hooks"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    herald.stop().await;
}

/// Posts a form of the admin pages with the session and its CSRF token.
pub(crate) async fn post_form(
    herald: &TestHerald,
    cookie: &str,
    csrf: &str,
    path: &str,
    fields: &[(&str, &str)],
) -> Response {
    let mut form = vec![("csrf", csrf)];
    form.extend_from_slice(fields);
    no_redirects()
        .post(herald.url(path))
        .header("cookie", cookie)
        .form(&form)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_outage_the_hook_page_retries_what_failed_and_re_enabling_offers_it() {
    let (_dir, herald) = start().await;
    let receiver = TestReceiver::start().await;
    receiver.answer_always(Answer::status(500));
    let hook = herald
        .create_hook(json!({"target_url": receiver.url("/down"), "company_id": 1, "events": ["Deal.create"]}))
        .await;
    let id = hook["id"].as_str().unwrap().to_owned();
    herald.app().execute(
        "INSERT INTO \"Deal\" (title, amount, stage, is_project, company_id, project_id)
             VALUES ('Outage deal', 10, 'lead', 0, 1, 10)",
        &[],
    );
    // The first attempt and three retries, 200 ms apart, all fail.
    receiver.wait_for(4, STEP).await;
    let mut failed = false;
    for _ in 0..100 {
        let (_, events) = herald
            .get(&format!("/api/v1/hooks/{id}/events?status=failed"))
            .await;
        if events["events"].as_array().is_some_and(|e| e.len() == 1) {
            failed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(failed, "the event ends failed");
    let failing_since = herald.get(&format!("/api/v1/hooks/{id}")).await.1["failing_since"]
        .as_str()
        .expect("the hook is failing")
        .to_owned();

    let cookie = session_cookie(&herald).await;
    let hook_path = format!("/admin/hooks/{id}");
    let (_, hook_page) = page(&herald, &cookie, &hook_path).await;
    let csrf = csrf_of(&hook_page);
    assert!(
        hook_page.contains("Retry failed events"),
        "the recovery form is on the page"
    );

    // Disabled, then enabled again from the page: the recovery form starts when it began failing.
    let off = post_form(
        &herald,
        &cookie,
        &csrf,
        &format!("{hook_path}/status"),
        &[("enabled", "false")],
    )
    .await;
    assert_eq!(off.status(), 303);
    let on = post_form(
        &herald,
        &cookie,
        &csrf,
        &format!("{hook_path}/status"),
        &[("enabled", "true")],
    )
    .await;
    assert_eq!(on.status(), 303);
    let location = on.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.ends_with("#recover"), "{location}");
    let (_, enabled_page) = page(&herald, &cookie, location.trim_end_matches("#recover")).await;
    assert!(
        enabled_page.contains(&format!("value=\"{}\"", &failing_since[..19])),
        "the form is filled with {failing_since}"
    );
    assert!(enabled_page.contains("retry the events that failed since it started failing"));

    // A time that cannot be read is said in words; nothing is retried.
    let bad = post_form(
        &herald,
        &cookie,
        &csrf,
        &format!("{hook_path}/retry-failed"),
        &[("since", "yesterday")],
    )
    .await;
    assert_eq!(bad.status(), 303);
    let (_, after_bad) = page(&herald, &cookie, &hook_path).await;
    assert!(
        after_bad.contains("Nothing was retried"),
        "a warning banner"
    );
    assert!(
        after_bad.contains("not an RFC 3339 time"),
        "naming what is wrong"
    );

    // The endpoint is back: the failed event is delivered again.
    receiver.answer_always(Answer::status(200));
    let since = &failing_since[..19];
    let retried = post_form(
        &herald,
        &cookie,
        &csrf,
        &format!("{hook_path}/retry-failed"),
        &[("since", since), ("include_discarded", "true")],
    )
    .await;
    assert_eq!(retried.status(), 303);
    assert!(
        retried.headers()["location"]
            .to_str()
            .unwrap()
            .ends_with("#recover"),
        "back to the form that was used"
    );
    let (_, after) = page(&herald, &cookie, &hook_path).await;
    assert!(
        after.contains("1 event is being delivered again."),
        "a green banner"
    );
    let got = receiver.wait_for(5, STEP).await;
    assert_eq!(got[4].json()["row"]["title"], "Outage deal");
    receiver.stop();
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_wrong_tokens_count_per_forwarded_client() {
    let herald = TestHerald::demo(|config| {
        // The test client stands for the proxy.
        config.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let client = no_redirects();
    let guess = |from: &'static str, token: &'static str| {
        client
            .get(herald.url("/api/v1/hooks"))
            .header("x-forwarded-for", from)
            .bearer_auth(token)
            .send()
    };
    for _ in 0..10 {
        assert_eq!(guess("203.0.113.5", "wrong").await.unwrap().status(), 401);
    }
    assert_eq!(guess("203.0.113.5", "wrong").await.unwrap().status(), 429);
    // Another client behind the same proxy is not held up by the first one's guesses.
    assert_eq!(guess("203.0.113.6", "wrong").await.unwrap().status(), 401);
    assert_eq!(guess("203.0.113.6", TOKEN).await.unwrap().status(), 200);
    herald.stop().await;
}

/// Bad input found from outside: each is refused with what is wrong, and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_what_is_wrong_and_stores_nothing() {
    let (_dir, herald) = start().await;

    // A `next` with a control character or a non-ASCII one answered a plain-text 500 and still
    // issued a session: now it is ignored like a foreign one.
    for next in [
        "/admin\u{1}x",
        "/admin/\u{e9}t\u{e9}",
        "/admin\r\nSet-Cookie: x=1",
    ] {
        let response = no_redirects()
            .post(herald.url("/admin/login"))
            .form(&[("token", TOKEN), ("next", next)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303, "{next:?}");
        assert_eq!(response.headers()["location"], "/admin", "{next:?}");
    }

    let client = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, body: serde_json::Value| {
        client
            .request(method, herald.url(path))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
    };
    let target = "http://127.0.0.1:9/hook";
    for (body, code) in [
        (
            json!({"target_url": target, "company_id": -1}),
            "invalid_scope",
        ),
        (
            json!({"target_url": target, "company_id": 0}),
            "invalid_scope",
        ),
        (
            json!({"target_url": target, "project_id": -7}),
            "invalid_scope",
        ),
        (
            json!({"target_url": target, "company_id": 999_999}),
            "unknown_company",
        ),
        (
            json!({"target_url": target, "project_id": 999_999}),
            "unknown_project",
        ),
        (
            json!({"target_url": target, "company_id": 1, "description": "a\u{0}b"}),
            "invalid_description",
        ),
    ] {
        let response = call(reqwest::Method::POST, "/api/v1/hooks", body.clone())
            .await
            .unwrap();
        assert_eq!(response.status(), 422, "{body}");
        let answer: serde_json::Value = response.json().await.unwrap();
        assert_eq!(answer["error"]["code"], code, "{body}: {answer}");
    }
    assert_eq!(hook_count(&herald).await, 0);
    // The demo's companies and projects are there to be named.
    let hook = herald
        .create_hook(json!({"target_url": target, "company_id": 1}))
        .await;
    let id = hook["id"].as_str().unwrap();
    let response = call(
        reqwest::Method::PATCH,
        &format!("/api/v1/hooks/{id}"),
        json!({"company_id": 999_999}),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 422);
    let (_, stored) = herald.get(&format!("/api/v1/hooks/{id}")).await;
    assert_eq!(stored["company_id"], 1);

    // Perform-list's POST takes a number, as its document says, not a string.
    let response = call(
        reqwest::Method::POST,
        "/EPT_WebhookPerformList",
        json!({"event": "NewOpportunity", "limit": "5"}),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 422);
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(answer["error"]["code"], "invalid_limit");

    // The admin form refuses what is not UTF-8 rather than storing U+FFFD, and a NUL.
    let cookie = session_cookie(&herald).await;
    let (_, index) = page(&herald, &cookie, "/admin").await;
    let csrf = csrf_of(&index);
    for description in ["caf%E9", "a%00b"] {
        let body = format!(
            "csrf={csrf}&scope=company%3A1&target_url=http%3A%2F%2F127.0.0.1%3A9%2Fhook&authorization=&description={description}"
        );
        let response = no_redirects()
            .post(herald.url("/admin/hooks"))
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(
            [400, 422].contains(&response.status().as_u16()),
            "{description}: {}",
            response.status()
        );
    }
    assert_eq!(hook_count(&herald).await, 1, "only the valid hook");
    herald.stop().await;
}

/// The "API" link opens a reference page served by herald itself (no CDN): every operation by
/// area, with its method, path, id, what it does, its parameters and answers, and which take no
/// token; the raw document is one link away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_link_opens_a_readable_reference_of_every_operation() {
    let (_dir, herald) = start().await;
    let cookie = session_cookie(&herald).await;
    let (_, index) = page(&herald, &cookie, "/admin").await;
    assert!(
        index.contains("href=\"/admin/api\""),
        "the nav links to the reference"
    );
    let (status, reference) = page(&herald, &cookie, "/admin/api").await;
    assert_eq!(status, 200);
    let document: Value = herald.get("/api/v1/openapi.json").await.1;
    let mut operations = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let id = operation["operationId"].as_str().unwrap();
            operations += 1;
            assert!(
                reference.contains(&format!("id=\"{id}\"")),
                "{id} has no anchor"
            );
            let escaped = path.replace('&', "&amp;");
            assert!(reference.contains(&escaped), "{path} is not shown");
            assert!(
                reference.contains(&method.to_uppercase()),
                "{method} {path}"
            );
        }
    }
    assert!(operations >= 29, "{operations}");
    for text in [
        "tickGridCell",
        "only_failures",
        "No token",
        "href=\"/api/v1/openapi.json\"",
        "Bearer",
    ] {
        assert!(
            reference.contains(text),
            "{text} missing from the reference"
        );
    }
    // Nothing is loaded from elsewhere.
    assert!(!reference.contains("src=\"http"), "a script from elsewhere");
    assert!(
        !reference.contains("href=\"http"),
        "a stylesheet or link elsewhere"
    );
    // Signed out, it asks to sign in like every admin page.
    let response = no_redirects()
        .get(herald.url("/admin/api"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    herald.stop().await;
}

/// What new users tripped on, on the pages: subscriptions that all read "every event", a Disable
/// that discards without asking, and a response body shown re-ordered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_show_their_trigger_disable_asks_and_bodies_show_as_received() {
    let (_dir, herald) = start().await;
    let receiver = TestReceiver::start().await;
    // A body whose keys are not in order, with its own spacing.
    receiver.answer_always(Answer {
        body: "{\"zeta\": 1, \"alpha\": [2,3]}".into(),
        ..Answer::status(200)
    });
    herald
        .subscribe("NewOpportunity", &receiver.url("/opportunities"))
        .await;
    let won = herald.subscribe("DealWon", &receiver.url("/won")).await;
    let cookie = session_cookie(&herald).await;
    let (_, index) = page(&herald, &cookie, "/admin").await;
    assert!(
        index.contains("NewOpportunity"),
        "the trigger of each subscription is shown"
    );
    assert!(index.contains("DealWon"));
    assert!(!index.contains("every event (REST hooks subscription)"));

    let won_id = won["id"].as_str().unwrap();
    let (_, hook_page) = page(&herald, &cookie, &format!("/admin/hooks/{won_id}")).await;
    let disable = hook_page
        .find("action=\"/admin/hooks/")
        .and_then(|_| hook_page.find("/status\""))
        .map(|at| &hook_page[at.saturating_sub(200)..at + 200])
        .expect("the disable form");
    assert!(
        disable.contains("data-confirm="),
        "Disable asks first: {disable}"
    );

    herald.insert_deal(Deal {
        is_project: true,
        ..Deal::titled("Shown as received")
    });
    receiver.wait_for(1, Duration::from_secs(10)).await;
    let hooks: Value = herald.get("/api/v1/hooks").await.1;
    let opportunities = hooks["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["events"][0] == "NewOpportunity")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The attempt is recorded once the answer is in: a moment after the receiver saw it.
    let mut seq = None;
    for _ in 0..100 {
        let log: Value = herald
            .get(&format!("/api/v1/hooks/{opportunities}/deliveries"))
            .await
            .1;
        seq = log["deliveries"][0]["id"].as_i64();
        if seq.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seq = seq.expect("the attempt is in the deliveries log");
    let (status, detail) = page(
        &herald,
        &cookie,
        &format!("/admin/hooks/{opportunities}/deliveries/{seq}"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        detail.contains("{&quot;zeta&quot;: 1, &quot;alpha&quot;: [2,3]}")
            || detail.contains("{&#34;zeta&#34;: 1, &#34;alpha&#34;: [2,3]}"),
        "the body exactly as received: {detail}"
    );
    herald.stop().await;
}

/// The sign-in page names the token file of this herald's database, not the default's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sign_in_hint_names_this_databases_token_file() {
    let dir = tempfile::tempdir().unwrap();
    let scripts = demo_scripts(dir.path());
    let db = herald::database::Database::Sqlite(dir.path().join("other.db"));
    let config = test_config_on(db, dir.path(), &scripts);
    let herald = TestHerald::start(config).await;
    let response = no_redirects()
        .get(herald.url("/admin/login"))
        .send()
        .await
        .unwrap();
    let text = response.text().await.unwrap();
    assert!(text.contains("other.db.api-token"), "{text}");
    assert!(!text.contains("herald.db.api-token"));
    herald.stop().await;
}

/// Many hooks: the API and the Webhooks page give a total, pages, and a search by endpoint or
/// description, by selected event and by status (the page listed the first 1,000 of 10,000 and
/// said nothing of the others).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hooks_lists_page_count_and_search() {
    let (_dir, herald) = start().await;
    for i in 0..30 {
        herald
            .subscribe("NewOpportunity", &format!("http://127.0.0.1:9/zap/{i}"))
            .await;
    }
    let special = herald
        .create_hook(json!({
            "target_url": "http://127.0.0.1:9/Special-Endpoint",
            "company_id": 1,
            "events": ["Deal.update"],
            "description": "the billing sync",
        }))
        .await;
    let won = herald.subscribe("DealWon", "http://127.0.0.1:9/won").await;
    let (status, _) = herald
        .send(
            "PATCH",
            &format!("/api/v1/hooks/{}", won["id"].as_str().unwrap()),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(status, 200);

    // The API: a total on every page, and the filters.
    let (_, first) = herald.get("/api/v1/hooks?limit=10").await;
    assert_eq!(first["total"], 32);
    assert_eq!(first["hooks"].as_array().unwrap().len(), 10);
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = herald
        .get(&format!("/api/v1/hooks?limit=10&cursor={cursor}"))
        .await;
    assert_eq!(second["total"], 32);
    assert_ne!(second["hooks"][0]["id"], first["hooks"][0]["id"]);
    for (query, total) in [
        ("q=special-endpoint", 1),
        ("q=BILLING", 1),
        ("q=zap%2F1", 11),
        ("event=DealWon", 1),
        ("event=Deal.update", 1),
        ("status=disabled", 1),
        ("status=enabled", 31),
        ("status=failing", 0),
        ("event=NewOpportunity&q=zap%2F2", 11),
    ] {
        let (status, page) = herald.get(&format!("/api/v1/hooks?{query}")).await;
        assert_eq!(status, 200, "{query}: {page}");
        assert_eq!(page["total"], total, "{query}: {page}");
        assert_eq!(
            page["hooks"].as_array().unwrap().len(),
            total.min(25),
            "{query}"
        );
    }
    let (status, answer) = herald.get("/api/v1/hooks?status=sleeping").await;
    assert_eq!(status, 400);
    assert_eq!(answer["error"]["code"], "invalid_query");

    // The page: the total, a search form, and the hooks found, 25 a page.
    let cookie = session_cookie(&herald).await;
    let (_, index) = page(&herald, &cookie, "/admin").await;
    assert!(index.contains("32 hooks"), "the total");
    assert!(index.contains("name=\"q\""), "a search field");
    let (_, found) = page(&herald, &cookie, "/admin?q=special").await;
    assert!(found.contains("1 hook found"), "{found}");
    assert!(found.contains(special["id"].as_str().unwrap()));
    assert!(!found.contains("/zap/3\""), "only what was searched");
    let (_, all) = page(&herald, &cookie, "/admin?status=enabled").await;
    assert!(all.contains("31 hooks found"));
    let next = all
        .split("href=\"")
        .find(|s| s.starts_with("/admin?") && s.contains("cursor="))
        .and_then(|s| s.split('"').next())
        .expect("a link to the next page")
        .replace("&amp;", "&")
        .replace("&#38;", "&");
    let (status, more) = page(&herald, &cookie, &next).await;
    assert_eq!(status, 200);
    assert!(more.contains("31 hooks found"));
    herald.stop().await;
}

/// The hook page tells one story: a failing hook's retrying events show in a tile of their own,
/// statuses read as words in both lists, a waiting event can be discarded from the page, and the
/// secret shown once has a copy button.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hook_page_counts_retries_discards_from_the_list_and_copies_the_new_secret() {
    let dir = tempfile::tempdir().unwrap();
    let scripts = demo_scripts(dir.path());
    let mut config = test_config(dir.path(), &scripts);
    config.delivery.retry_schedule = vec![Duration::from_secs(600)];
    let herald = TestHerald::start(config).await;
    let receiver = TestReceiver::start().await;
    receiver.answer_always(Answer::status(503));
    let hook = herald
        .create_hook(json!({
            "target_url": receiver.url("/down"),
            "company_id": 1,
            "events": ["Deal.create"],
        }))
        .await;
    let id = hook["id"].as_str().unwrap().to_owned();
    herald.insert_deal(Deal {
        company_id: Some(1),
        ..Deal::titled("Waits")
    });
    receiver.wait_for(1, Duration::from_secs(10)).await;
    let cookie = session_cookie(&herald).await;
    let hook_path = format!("/admin/hooks/{id}");
    let mut page_text = String::new();
    for _ in 0..100 {
        page_text = page(&herald, &cookie, &hook_path).await.1;
        // (The status filter's options say "Retrying" too: wait for the event's own badge.) The
        // tiles and the list are two reads, so the attempt may land between them: wait for both.
        if page_text.contains("data-status=\"retrying\"")
            && page_text.contains("id=\"count-retrying\">1<")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(page_text.contains(">Retrying<"), "statuses read as words");
    let tile = page_text
        .split("id=\"count-retrying\">")
        .nth(1)
        .expect("a retrying tile");
    assert!(tile.starts_with('1'), "one event retrying: {}", &tile[..20]);
    let (_, events) = herald.get(&format!("/api/v1/hooks/{id}/events")).await;
    let event_id = events["events"][0]["id"].as_str().unwrap().to_owned();
    let discard = format!("/admin/hooks/{id}/events/{event_id}/discard");
    assert!(
        page_text.contains(&discard),
        "a Discard button for the waiting event"
    );

    let csrf = csrf_of(&page_text);
    let response = no_redirects()
        .post(herald.url(&discard))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str()), ("return_to", hook_path.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let (_, events) = herald.get(&format!("/api/v1/hooks/{id}/events")).await;
    assert_eq!(events["events"][0]["status"], "discarded");

    // A new secret is shown once, with a button that copies it.
    let response = no_redirects()
        .post(herald.url(&format!("{hook_path}/rotate-secret")))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let (_, after) = page(&herald, &cookie, &hook_path).await;
    assert!(
        after.contains("data-copy=\"whsec_"),
        "a copy button for the new secret"
    );
    herald.stop().await;
}

/// An action on the events list shows its outcome there, not at the top of a long page, and says
/// where a retried event went when the list's filter no longer shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outcome_of_an_events_action_shows_where_it_was_clicked() {
    let dir = tempfile::tempdir().unwrap();
    let scripts = demo_scripts(dir.path());
    let mut config = test_config(dir.path(), &scripts);
    config.delivery.retry_schedule = vec![];
    let herald = TestHerald::start(config).await;
    let receiver = TestReceiver::start().await;
    receiver.answer_always(Answer::status(500));
    let hook = herald
        .create_hook(json!({
            "target_url": receiver.url("/down"),
            "company_id": 1,
            "events": ["Deal.create"],
        }))
        .await;
    let id = hook["id"].as_str().unwrap().to_owned();
    herald.insert_deal(Deal {
        company_id: Some(1),
        ..Deal::titled("Fails")
    });
    receiver.wait_for(1, Duration::from_secs(10)).await;
    let mut events = Value::Null;
    for _ in 0..100 {
        events = herald.get(&format!("/api/v1/hooks/{id}/events")).await.1;
        if events["events"][0]["status"] == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(events["events"][0]["status"], "failed");
    let event_id = events["events"][0]["id"].as_str().unwrap().to_owned();
    let cookie = session_cookie(&herald).await;
    let filtered = format!("/admin/hooks/{id}?status=failed#events");
    let (_, page_text) = page(
        &herald,
        &cookie,
        &format!("/admin/hooks/{id}?status=failed"),
    )
    .await;
    let csrf = csrf_of(&page_text);
    let response = no_redirects()
        .post(herald.url(&format!("/admin/hooks/{id}/events/{event_id}/retry")))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str()), ("return_to", filtered.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.ends_with("#events"), "{location}");
    let (_, after) = page(&herald, &cookie, location.split('#').next().unwrap()).await;
    let events_section = after.split("id=\"events\"").nth(1).unwrap();
    let before_section = after.split("id=\"events\"").next().unwrap();
    assert!(
        events_section.contains(&event_id) && events_section.contains("role=\"status\""),
        "the banner is in the events section"
    );
    assert!(
        !before_section.contains("id=\"banner\""),
        "not at the top of the page"
    );
    assert!(
        events_section.contains("no longer matches this filter"),
        "it says where the event went"
    );
    herald.stop().await;
}
