//! The admin pages in a real headless Chromium, driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`, which `.ci/install` installs): every step of the Procore help pages, done
//! the way a person does it. Screenshots of the main pages land in `target/browser-screenshots/`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::support::{demo_scripts, test_config, Answer, Deal, TestHerald, TestReceiver, TOKEN};

/// How long a page may take to show what a step waits for.
const STEP: Duration = Duration::from_secs(15);

fn program(env: &str, default: &str) -> PathBuf {
    let path = PathBuf::from(std::env::var(env).unwrap_or_else(|_| default.to_owned()));
    assert!(
        path.exists(),
        "{} is missing: the browser tests need Debian's chromium and chromium-driver \
         (run .ci/install, or apt-get install chromium chromium-driver; {env} overrides the path)",
        path.display()
    );
    path
}

/// A headless Chromium behind its own chromedriver on a loopback port, with a fresh profile.
struct Browser {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
    base: String,
}

impl Browser {
    async fn start(base: String) -> Browser {
        // Two TLS backends (ring, aws-lc) are linked in, so rustls will not pick one by itself;
        // the webdriver speaks plain HTTP on loopback anyway.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let chromium = program("HERALD_CHROMIUM", "/usr/bin/chromium");
        let chromedriver = program("HERALD_CHROMEDRIVER", "/usr/bin/chromedriver");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let caps: serde_json::Map<String, Value> = serde_json::from_value(json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }))
        .unwrap();
        let webdriver = format!("http://127.0.0.1:{port}");
        let mut last_error = String::new();
        for _ in 0..100 {
            match ClientBuilder::rustls()
                .unwrap()
                .capabilities(caps.clone())
                .connect(&webdriver)
                .await
            {
                Ok(client) => {
                    return Browser {
                        client,
                        driver,
                        _profile: profile,
                        base,
                    }
                }
                Err(e) => last_error = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no WebDriver session with chromium: {last_error}");
    }

    async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap();
    }

    async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        url.path().to_owned()
    }

    async fn wait(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(STEP)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no '{css}' on {} within {STEP:?}: {e}", self.base))
    }

    async fn all(&self, css: &str) -> Vec<Element> {
        self.client.find_all(Locator::Css(css)).await.unwrap()
    }

    async fn text(&self, css: &str) -> String {
        self.wait(css).await.text().await.unwrap()
    }

    /// Waits until `check` holds of the page's JavaScript value `script` (an expression).
    async fn until(&self, script: &str, check: impl Fn(&Value) -> bool) -> Value {
        self.poll(script, check, false).await
    }

    /// Reloads until `check` holds: for what the server shows only on a new page load.
    async fn reload_until(&self, script: &str, check: impl Fn(&Value) -> bool) -> Value {
        self.poll(script, check, true).await
    }

    async fn poll(&self, script: &str, check: impl Fn(&Value) -> bool, reload: bool) -> Value {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            let value = self
                .client
                .execute(&format!("return {script};"), vec![])
                .await
                .unwrap();
            if check(&value) {
                return value;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "'{script}' is still {value} after {STEP:?}{}",
                if reload { " of reloading" } else { "" }
            );
            if reload {
                tokio::time::sleep(Duration::from_millis(200)).await;
                self.client.refresh().await.unwrap();
            } else {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Opens the hook page `path` until its deliveries log has an entry.
    async fn reload_until_delivered(&self, path: &str) {
        self.goto(path).await;
        self.reload_until("document.querySelectorAll('.deliveries li').length", |v| {
            v.as_u64().is_some_and(|n| n > 0)
        })
        .await;
    }

    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        let folder = screenshots_folder();
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join(format!("{name}.png")), png).unwrap();
    }

    async fn sign_in(&self) {
        self.goto("/admin").await;
        self.wait("#token").await.send_keys(TOKEN).await.unwrap();
        self.wait("form[action='/admin/login'] button[type=submit]")
            .await
            .click()
            .await
            .unwrap();
        self.wait("#new-hook").await;
    }

    /// Fills the "new hook" form with `scope` and `url` (over what it held) and saves it.
    async fn submit_new_hook(&self, scope: &str, url: &str) {
        self.wait("#scope")
            .await
            .select_by_value(scope)
            .await
            .unwrap();
        let target = self.wait("#target_url").await;
        target.clear().await.unwrap();
        target.send_keys(url).await.unwrap();
        self.wait("#new-hook button[type=submit]")
            .await
            .click()
            .await
            .unwrap();
    }

    async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn screenshots_folder() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("browser-screenshots")
}

fn count(value: &Value) -> u64 {
    value.as_u64().unwrap_or(0)
}

/// Inserts a deal from a connection of the application's own, as another process would.
fn insert_deal(herald: &TestHerald, title: &str) -> i64 {
    herald.insert_deal(Deal {
        amount: Some(1000.0),
        company_id: Some(1),
        project_id: Some(10),
        ..Deal::titled(title)
    })
}

/// Every attempt of a hook, through the API, walking all pages.
async fn api_deliveries(herald: &TestHerald, hook_id: &str, only_failures: bool) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path =
            format!("/api/v1/hooks/{hook_id}/deliveries?limit=100&only_failures={only_failures}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, page) = herald.get(&path).await;
        assert_eq!(status, 200, "{page}");
        all.extend(page["deliveries"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return all,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_does_every_step_of_the_webhooks_page_in_a_browser() {
    let herald = TestHerald::demo(|_| {}).await;
    let receiver = TestReceiver::start().await;
    let browser = Browser::start(herald.url("")).await;

    // Signed out, the pages send the browser to the sign-in form; a wrong token is refused.
    browser.goto("/admin").await;
    browser.wait("#token").await;
    assert_eq!(browser.path().await, "/admin/login");
    browser.screenshot("login").await;
    browser
        .wait("#token")
        .await
        .send_keys("not-the-token")
        .await
        .unwrap();
    browser
        .wait("form[action='/admin/login'] button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    assert!(browser
        .text(".banner-warning")
        .await
        .contains("That token is not valid"));
    browser.sign_in().await;
    assert_eq!(browser.path().await, "/admin");

    // A hook with a bad URL: a warning banner that says what is wrong, and the typed values kept.
    browser
        .submit_new_hook("company:1", "ftp://example.com/hook")
        .await;
    let warning = browser.text(".banner-warning").await;
    assert!(warning.contains("not saved"), "{warning}");
    assert!(
        warning.to_lowercase().contains("http"),
        "says which schemes: {warning}"
    );
    let kept = browser
        .wait("#target_url")
        .await
        .prop("value")
        .await
        .unwrap();
    assert_eq!(kept.as_deref(), Some("ftp://example.com/hook"));

    // Then a good one: the hook's page, a green banner, the secret shown once.
    browser
        .submit_new_hook("company:1", &receiver.url("/hook"))
        .await;
    let banner = browser.text(".banner-success").await;
    assert!(banner.contains("Endpoint saved"), "{banner}");
    let secret = browser.text("#new-secret").await;
    assert!(secret.starts_with("whsec_"), "{secret}");
    let hook_path = browser.path().await;
    let hook_id = hook_path.strip_prefix("/admin/hooks/").unwrap().to_owned();
    browser.client.refresh().await.unwrap();
    browser.wait("#overview").await;
    assert!(
        browser.all("#new-secret").await.is_empty(),
        "the secret shows once"
    );

    // Deal x Create, ticked: saved at once, still ticked after a reload, and the API agrees.
    browser
        .wait("input[aria-label='Deal create']")
        .await
        .click()
        .await
        .unwrap();
    browser
        .until(
            "document.querySelector(\"input[aria-label='Deal create']\").closest('tr').querySelector('.save-state').textContent",
            |v| v.as_str() == Some("Saved"),
        )
        .await;
    browser.client.refresh().await.unwrap();
    assert!(browser
        .wait("input[aria-label='Deal create']")
        .await
        .is_selected()
        .await
        .unwrap());
    let (_, grid) = herald.get(&format!("/api/v1/hooks/{hook_id}/grid")).await;
    let deal = grid["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == "Deal")
        .unwrap();
    assert_eq!(deal["create"], true);
    assert_eq!(deal["update"], false);

    // The keyboard reaches the grid: Space on a focused box ticks it and saves.
    let update_box = browser.wait("input[aria-label='Deal update']").await;
    update_box.send_keys(" ").await.unwrap();
    browser
        .until(
            "document.querySelector(\"input[aria-label='Deal update']\").closest('tr').querySelector('.save-state').textContent",
            |v| v.as_str() == Some("Saved"),
        )
        .await;
    update_box.send_keys(" ").await.unwrap();
    browser
        .until(
            "[document.querySelector(\"input[aria-label='Deal update']\").checked, document.querySelector(\"input[aria-label='Deal update']\").closest('tr').querySelector('.save-state').textContent]",
            |v| v[0] == false && v[1] == "Saved",
        )
        .await;

    // A deal inserted by another connection: its delivery at the top of the log.
    let first_deal = insert_deal(&herald, "Browser-made deal");
    receiver.wait_for(1, STEP).await;
    let top = browser
        .reload_until(
            // The tiles are read before the log: wait until both have the attempt.
            "(() => { const li = document.querySelector('.deliveries li'); return li ? [li.dataset.outcome, li.textContent, document.querySelector('#count-delivered').textContent] : null; })()",
            |v| v.is_array() && v[2] == "1",
        )
        .await;
    assert_eq!(top[0], "success");
    let top_text = top[1].as_str().unwrap();
    assert!(top_text.contains("Deal.create"), "{top_text}");
    assert!(top_text.contains(&format!("#{first_deal}")), "{top_text}");

    // The receiver fails: "Show only failures" lists the failures and nothing else.
    receiver.answer_always(Answer {
        body: "{\"error\":\"receiver is down for maintenance\"}".into(),
        ..Answer::status(500)
    });
    let failing_deals = [
        insert_deal(&herald, "Failing deal one"),
        insert_deal(&herald, "Failing deal two"),
    ];
    // Both events exhaust their retries (200 ms apart in tests) and fail for good.
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let (_, failed) = herald
            .get(&format!("/api/v1/hooks/{hook_id}/events?status=failed"))
            .await;
        if failed["events"].as_array().unwrap().len() == 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the events did not fail: {failed}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let failures = api_deliveries(&herald, &hook_id, true).await;
    assert!(
        failures.len() >= 4,
        "every attempt of both events: {}",
        failures.len()
    );
    browser.goto(&hook_path).await;
    browser.wait("#only-failures").await.click().await.unwrap();
    let outcomes = browser
        .until(
            "Array.from(document.querySelectorAll('.deliveries li')).map(li => li.dataset.outcome)",
            |v| {
                v.as_array()
                    .is_some_and(|a| a.len() == failures.len().min(25))
            },
        )
        .await;
    assert!(
        outcomes.as_array().unwrap().iter().all(|o| o != "success"),
        "{outcomes}"
    );
    assert!(browser.path().await.ends_with(&hook_id));
    assert!(browser
        .client
        .current_url()
        .await
        .unwrap()
        .query()
        .unwrap_or_default()
        .contains("only_failures=true"));
    browser.screenshot("hook").await;

    // An entry opens to its request payload, response headers and response body.
    browser
        .wait(".deliveries li summary")
        .await
        .click()
        .await
        .unwrap();
    let body = browser.text(".deliveries li .response-body").await;
    assert!(body.contains("receiver is down for maintenance"), "{body}");
    let payload = browser.text(".deliveries li .payload").await;
    assert!(payload.contains("Failing deal"), "{payload}");
    let detail = browser.text(".deliveries li .detail").await;
    assert!(detail.contains("HTTP 500"), "{detail}");
    browser
        .client
        .execute(
            "document.querySelector('.deliveries li').scrollIntoView();",
            vec![],
        )
        .await
        .unwrap();
    browser.screenshot("delivery").await;

    // Retry a failed event from the events section: it is delivered once the receiver is back.
    receiver.answer_always(Answer::status(200));
    browser
        .goto(&format!("{hook_path}?status=failed#events"))
        .await;
    let failed_row = browser
        .reload_until(
            "document.querySelectorAll('#events-table tbody tr').length",
            |v| count(v) == 2,
        )
        .await;
    assert_eq!(count(&failed_row), 2, "both failing deals failed for good");
    let event_id = browser
        .wait("#events-table tbody tr")
        .await
        .attr("data-event-id")
        .await
        .unwrap()
        .unwrap();
    browser
        .wait("#events-table tbody tr button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    let banner = browser.text(".banner-success").await;
    assert!(banner.contains("queued for delivery"), "{banner}");
    browser.goto(&format!("{hook_path}#events")).await;
    let status = browser
        .reload_until(
            &format!("(() => {{ const row = document.querySelector('#events-table tr[data-event-id=\"{event_id}\"]'); return row ? row.querySelector('[data-status]').dataset.status : null; }})()"),
            |v| v.as_str() == Some("delivered"),
        )
        .await;
    assert_eq!(status, "delivered");
    browser
        .client
        .execute(
            "document.getElementById('events').scrollIntoView();",
            vec![],
        )
        .await
        .unwrap();
    browser.screenshot("events").await;

    // Over 30 deliveries: 25 on the page, "More deliveries" brings the rest, none twice.
    for i in 0..30 {
        insert_deal(&herald, &format!("Bulk deal {i}"));
    }
    let deadline = tokio::time::Instant::now() + STEP;
    let expected = loop {
        let all = api_deliveries(&herald, &hook_id, false).await;
        let delivered = all.iter().filter(|d| d["succeeded"] == true).count();
        // The first deal, the retried event and the 30 new ones.
        if delivered >= 32 {
            break all;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{delivered} of 32 delivered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        expected.len() > 30 && expected.len() <= 50,
        "{}",
        expected.len()
    );
    browser.goto(&hook_path).await;
    browser.wait("#deliveries-list").await;
    assert_eq!(browser.all(".deliveries li").await.len(), 25);
    browser
        .wait("a[data-more-deliveries]")
        .await
        .click()
        .await
        .unwrap();
    let ids = browser
        .until(
            "Array.from(document.querySelectorAll('.deliveries li')).map(li => Number(li.dataset.deliveryId))",
            |v| v.as_array().is_some_and(|a| a.len() == expected.len()),
        )
        .await;
    let ids: Vec<i64> = ids
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    let api_ids: Vec<i64> = expected.iter().map(|d| d["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, api_ids, "newest first, every attempt once");
    assert!(browser.all("a[data-more-deliveries]").await.is_empty());
    assert!(failing_deals.iter().all(|id| *id > first_deal));

    browser.goto("/admin").await;
    browser.wait("#company-hooks-title").await;
    browser.screenshot("webhooks").await;
    browser.close().await;
    receiver.stop();
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scripts_page_shows_compile_errors_with_line_and_column_and_samples() {
    let dir = tempfile::tempdir().unwrap();
    let scripts = demo_scripts(dir.path());
    let herald = TestHerald::start(test_config(dir.path(), &scripts)).await;
    let browser = Browser::start(herald.url("")).await;
    browser.sign_in().await;

    browser.goto("/admin/scripts").await;
    let sample = browser.text("#trigger-NewOpportunity .sample").await;
    assert!(sample.contains("Sample payload"), "{sample}");
    browser
        .wait("#trigger-NewOpportunity .sample summary")
        .await
        .click()
        .await
        .unwrap();
    let payload = browser.text("#trigger-NewOpportunity .payload").await;
    assert!(payload.contains("Facade renovation"), "{payload}");
    browser.screenshot("scripts").await;

    // A script broken on line 3: the page says which file, line and column, and keeps the old
    // version live.
    std::fs::write(
        scripts.join("GetWebhookResponseBody_NewOpportunity.rhai"),
        "let deal = 1;\nlet x = 2;\nlet y = (;\n",
    )
    .unwrap();
    let error = browser
        .reload_until(
            "(() => { const e = document.querySelector('#trigger-NewOpportunity .error-text'); return e ? e.textContent : null; })()",
            |v| v.is_string(),
        )
        .await;
    let error = error.as_str().unwrap();
    assert!(error.starts_with("Line 3, column"), "{error}");
    let banner = browser.text(".banner-warning").await;
    assert!(banner.contains("1 script does not compile"), "{banner}");
    browser.close().await;
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_fit_common_window_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let scripts = demo_scripts(dir.path());
    let herald = TestHerald::start(test_config(dir.path(), &scripts)).await;
    let receiver = TestReceiver::start().await;
    let hook = herald
        .create_hook(
            json!({"target_url": receiver.url("/x"), "project_id": 10, "events": ["Deal.create"]}),
        )
        .await;
    insert_deal(
        &herald,
        "A deal with a rather long title to see that nothing overflows",
    );
    receiver.wait_for(1, STEP).await;
    let browser = Browser::start(herald.url("")).await;
    browser.sign_in().await;
    let hook_path = format!("/admin/hooks/{}", hook["id"].as_str().unwrap());
    for (width, height) in [(1920, 1080), (1280, 800), (1024, 768), (390, 844)] {
        browser.client.set_window_size(width, height).await.unwrap();
        for path in ["/admin", hook_path.as_str(), "/admin/scripts", "/admin/api"] {
            browser.goto(path).await;
            browser.wait("main h1").await;
            let overflow = browser
                .client
                .execute(
                    "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
                    vec![],
                )
                .await
                .unwrap();
            if count(&overflow) != 0 {
                let culprits = browser
                    .client
                    .execute(
                        "const w = document.documentElement.clientWidth;
                         return [...document.querySelectorAll('body *')]
                           .filter(e => e.getBoundingClientRect().right > w + 1
                                     && ![...e.children].some(c => c.getBoundingClientRect().right > w + 1))
                           .slice(0, 5)
                           .map(e => e.tagName.toLowerCase() + (e.className ? '.' + e.className : '')
                                     + ' ' + JSON.stringify((e.textContent || '').trim().slice(0, 40)));",
                        vec![],
                    )
                    .await
                    .unwrap();
                panic!("{path} at {width}x{height} scrolls sideways by {overflow} px; widest: {culprits}");
            }
        }
    }
    browser.goto(&hook_path).await;
    browser.wait("#overview").await;
    browser.screenshot("hook-narrow").await;

    // A box whose save fails (the hook was deleted meanwhile, from elsewhere) goes back and says why.
    let (status, _) = herald
        .send(
            "DELETE",
            &format!("/api/v1/hooks/{}", hook["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, 200);
    browser
        .client
        .execute(
            "document.querySelector(\"input[aria-label='Deal update']\").scrollIntoView();",
            vec![],
        )
        .await
        .unwrap();
    browser
        .wait("input[aria-label='Deal update']")
        .await
        .click()
        .await
        .unwrap();
    let state = browser
        .until(
            "[document.querySelector(\"input[aria-label='Deal update']\").checked, document.querySelector(\"input[aria-label='Deal update']\").closest('tr').querySelector('.save-state').textContent]",
            |v| v[1].as_str().is_some_and(|t| t.starts_with("Not saved")),
        )
        .await;
    assert_eq!(state[0], false, "the box is put back: {state}");
    assert!(state[1].as_str().unwrap().contains("hook"), "{state}");
    browser.close().await;
    receiver.stop();
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_is_tried_on_samples_saved_and_its_failures_shown_on_the_hook_page() {
    let dir = tempfile::tempdir().unwrap();
    let scripts = demo_scripts(dir.path());
    let herald = TestHerald::start(test_config(dir.path(), &scripts)).await;
    let receiver = TestReceiver::start().await;
    herald.insert_deal(Deal {
        amount: Some(900.0),
        is_project: true,
        company_id: Some(1),
        project_id: Some(10),
        ..Deal::titled("Shed repair")
    });
    let hook = herald
        .create_hook(json!({"target_url": receiver.url("/f"), "company_id": 1,
                            "events": ["NewOpportunity"]}))
        .await;
    let id = hook["id"].as_str().unwrap().to_owned();
    let browser = Browser::start(herald.url("")).await;
    browser.sign_in().await;
    browser.goto(&format!("/admin/hooks/{id}")).await;

    // Tried on the samples: each row says what the filter makes of it; nothing is saved.
    let field = browser.wait("#filter-text").await;
    field.send_keys("payload.amount >= 100000").await.unwrap();
    browser.wait("#try-filter").await.click().await.unwrap();
    let results = browser.text("#filter-results").await;
    assert!(
        results.contains("Facade renovation") && results.contains("Shed repair"),
        "{results}"
    );
    let verdicts: Vec<String> = {
        let mut verdicts = Vec::new();
        for row in browser.all("#filter-results tbody tr").await {
            verdicts.push(row.text().await.unwrap());
        }
        verdicts
    };
    assert!(
        verdicts
            .iter()
            .any(|r| r.contains("Facade renovation") && r.contains("Delivered")),
        "{verdicts:?}"
    );
    assert!(
        verdicts
            .iter()
            .any(|r| r.contains("Shed repair") && r.contains("Kept out")),
        "{verdicts:?}"
    );
    assert_eq!(
        browser
            .wait("#filter-text")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("payload.amount >= 100000"),
        "the typed filter stays in the field"
    );
    assert_eq!(
        herald.get(&format!("/api/v1/hooks/{id}")).await.1["filter"],
        Value::Null
    );
    browser.screenshot("hook-filter-samples").await;

    // A filter that does not compile: the error, with line and column, under the Filter heading.
    let field = browser.wait("#filter-text").await;
    field.clear().await.unwrap();
    field.send_keys("payload.amount >=").await.unwrap();
    browser.wait("#try-filter").await.click().await.unwrap();
    let banner = browser.text("#filter .banner-warning").await;
    assert!(banner.contains("does not compile: filter:1:"), "{banner}");

    // Saved: it applies from the next event on, and a failure on an event shows in the events list.
    let field = browser.wait("#filter-text").await;
    field.clear().await.unwrap();
    field
        .send_keys("payload.amount.to_int() >= 100000")
        .await
        .unwrap();
    browser
        .wait("#filter button[value=save]")
        .await
        .click()
        .await
        .unwrap();
    let saved = browser.text("#filter .banner-success").await;
    assert!(saved.contains("Filter saved"), "{saved}");
    assert_eq!(
        herald.get(&format!("/api/v1/hooks/{id}")).await.1["filter"],
        "payload.amount.to_int() >= 100000"
    );
    herald.insert_deal(Deal {
        is_project: true,
        company_id: Some(1),
        project_id: Some(10),
        ..Deal::titled("Amount unknown")
    });
    let held = browser
        .reload_until(
            "(() => { const e = document.querySelector('#events details.held summary'); return e ? e.textContent : null; })()",
            |v| v.is_string(),
        )
        .await;
    assert_eq!(held.as_str().unwrap(), "Held: the filter failed");
    browser.screenshot("hook-filter-held").await;
    browser.close().await;
    receiver.stop();
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_test_event_shows_what_the_endpoint_answered_and_marks_it_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let scripts = demo_scripts(dir.path());
    let herald = TestHerald::start(test_config(dir.path(), &scripts)).await;
    let receiver = TestReceiver::start().await;
    receiver.answer_always(Answer {
        body: "received, thank you".into(),
        ..Answer::status(200)
    });
    let hook = herald
        .create_hook(json!({"target_url": receiver.url("/t"), "company_id": 1,
                            "events": ["NewOpportunity"]}))
        .await;
    let id = hook["id"].as_str().unwrap().to_owned();
    let browser = Browser::start(herald.url("")).await;
    browser.sign_in().await;
    browser.goto(&format!("/admin/hooks/{id}")).await;
    browser.wait("#send-test").await.click().await.unwrap();
    let banner = browser.text("#overview .banner-success").await;
    assert!(
        banner.contains("Test NewOpportunity event sent: HTTP 200")
            && banner.contains("received, thank you"),
        "{banner}"
    );
    let entry = browser.text("#deliveries-list").await;
    assert!(
        entry.contains("Test"),
        "marked in the deliveries log: {entry}"
    );
    assert_eq!(receiver.received().len(), 1);
    browser.screenshot("hook-test-send").await;
    browser.close().await;
    receiver.stop();
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_started_from_the_hook_page_shows_its_progress_until_done() {
    let dir = tempfile::tempdir().unwrap();
    let scripts = demo_scripts(dir.path());
    let herald = TestHerald::start(test_config(dir.path(), &scripts)).await;
    let receiver = TestReceiver::start().await;
    // Slow enough that the page sees it run.
    receiver.answer_always(Answer {
        delay: Duration::from_millis(20),
        ..Answer::status(200)
    });
    let hook = herald
        .create_hook(json!({"target_url": receiver.url("/b"), "company_id": 1,
                            "events": ["NewOpportunity"]}))
        .await;
    let id = hook["id"].as_str().unwrap().to_owned();
    let browser = Browser::start(herald.url("")).await;
    browser.sign_in().await;
    browser.goto(&format!("/admin/hooks/{id}")).await;

    // A query that is not a read: refused, the typed query kept.
    let query = browser.wait("#backfill-query").await;
    query.send_keys("DELETE FROM \"Deal\"").await.unwrap();
    browser.wait("#start-backfill").await.click().await.unwrap();
    let banner = browser.text("#backfill .banner-warning").await;
    assert!(banner.contains("No backfill was started"), "{banner}");

    let query = browser.wait("#backfill-query").await;
    query.clear().await.unwrap();
    query
        .send_keys("SELECT id FROM \"Deal\" ORDER BY id")
        .await
        .unwrap();
    browser.wait("#start-backfill").await.click().await.unwrap();
    let banner = browser.text("#backfill .banner-success").await;
    assert!(
        banner.contains("Backfill started: 2 rows of NewOpportunity"),
        "{banner}"
    );
    // The page follows it without a reload.
    let status = browser
        .until(
            "(() => { const s = document.querySelector('#backfills .backfill-status'); return s ? s.textContent : null; })()",
            |v| v == "done",
        )
        .await;
    assert_eq!(status, "done");
    assert_eq!(browser.text("#backfills .backfill-count").await, "2 / 2");
    receiver.wait_for(2, STEP).await;
    browser.screenshot("hook-backfill").await;
    browser.close().await;
    receiver.stop();
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_phone_the_log_shows_the_event_and_the_events_actions_are_in_reach() {
    let dir = tempfile::tempdir().unwrap();
    let scripts = demo_scripts(dir.path());
    let herald = TestHerald::start(test_config(dir.path(), &scripts)).await;
    let receiver = TestReceiver::start().await;
    let hook = herald
        .create_hook(
            json!({"target_url": receiver.url("/a/rather/long/path/for-a-phone"),
                            "company_id": 1, "events": ["Deal.create"]}),
        )
        .await;
    let hook_path = format!("/admin/hooks/{}", hook["id"].as_str().unwrap());
    insert_deal(&herald, "Seen on a phone");
    receiver.wait_for(1, STEP).await;
    let browser = Browser::start(herald.url("")).await;
    browser.sign_in().await;

    browser.client.set_window_size(390, 844).await.unwrap();
    browser.reload_until_delivered(&hook_path).await;
    let fits = browser
        .client
        .execute(
            "const w = document.documentElement.clientWidth;
             const right = (css) => { const e = document.querySelector(css); return e ? e.getBoundingClientRect().right : null; };
             const wrap = document.querySelector('#events .table-wrap');
             return {
               width: w,
               status: right('#events-table [data-status]'),
               retry: right('#events-table button[aria-label^=\"Retry\"]'),
               time: right('#events-table td.nowrap'),
               scrolls: wrap.scrollWidth - wrap.clientWidth,
               event: document.querySelector('.deliveries .event').getBoundingClientRect().width,
             };",
            vec![],
        )
        .await
        .unwrap();
    let width = fits["width"].as_f64().unwrap();
    for part in ["status", "retry", "time"] {
        let right = fits[part].as_f64().unwrap_or(f64::MAX);
        assert!(right <= width, "{part} is out of reach at 390 px: {fits}");
    }
    assert_eq!(
        fits["scrolls"].as_f64(),
        Some(0.0),
        "no hidden sideways scroll: {fits}"
    );
    assert!(
        fits["event"].as_f64().unwrap() > 200.0,
        "the log's event column has room: {fits}"
    );
    browser
        .client
        .execute(
            "document.getElementById('events').scrollIntoView();",
            vec![],
        )
        .await
        .unwrap();
    browser.screenshot("hook-phone-events").await;
    // URLs break after their separators, not mid-word.
    browser.goto("/admin").await;
    let link = browser
        .client
        .execute(
            "return document.querySelector('td.url a').innerHTML;",
            vec![],
        )
        .await
        .unwrap();
    assert!(link.as_str().unwrap().contains("<wbr>"), "{link}");

    // At 1366 px no timestamp wraps.
    browser.client.set_window_size(1366, 768).await.unwrap();
    browser.goto(&hook_path).await;
    browser.wait("#events-table").await;
    let wrapped = browser
        .client
        .execute(
            "return [...document.querySelectorAll('.deliveries time, #events-table td.nowrap')]
               .filter(e => { const r = document.createRange(); r.selectNodeContents(e);
                              return new Set([...r.getClientRects()].map(x => Math.round(x.top))).size > 1; }).length;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(count(&wrapped), 0, "timestamps on one line at 1366 px");
    browser.close().await;
    receiver.stop();
    herald.stop().await;
}

/// The text of a message before its first variable: what a banner made of it starts with.
fn leading_words(lang: &str, id: &str) -> String {
    let text = crate::languages::message(lang, id).replace(['\u{a0}', '\u{202f}'], " ");
    text.split('{').next().unwrap().trim_end().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_walks_the_main_steps_in_french() {
    let herald = TestHerald::demo(|_| {}).await;
    let receiver = TestReceiver::start().await;
    let browser = Browser::start(herald.url("")).await;
    // As WebDriver reads text: French typography's no-break spaces come back as spaces.
    let fr = |id: &str| crate::languages::message("fr", id).replace(['\u{a0}', '\u{202f}'], " ");

    // The browser speaks English; the switch on the page turns it French, and it stays so.
    browser.sign_in().await;
    browser.wait("html[lang=en]").await;
    browser
        .wait(".languages a[hreflang=fr]")
        .await
        .click()
        .await
        .unwrap();
    browser.wait("html[lang=fr]").await;
    assert_eq!(browser.path().await, "/admin");
    assert_eq!(browser.text("#new-hook-title").await, fr("index-new-hook"));
    assert_eq!(
        browser.text("#new-hook button[type=submit]").await,
        fr("index-save-endpoint")
    );

    // A hook: the banner and the secret, in French.
    browser
        .submit_new_hook("company:1", &receiver.url("/hook"))
        .await;
    let banner = browser.text(".banner-success").await;
    assert!(banner.contains(&fr("banner-endpoint-created")), "{banner}");
    let hook_path = browser.path().await;
    let hook_id = hook_path.strip_prefix("/admin/hooks/").unwrap().to_owned();
    browser.wait("html[lang=fr]").await;

    // A grid box saves, and says so in French.
    browser
        .wait("input[data-cell-url$='/grid/Deal/create']")
        .await
        .click()
        .await
        .unwrap();
    let saved = fr("js-saved");
    browser
        .until(
            "document.querySelector(\"input[data-cell-url$='/grid/Deal/create']\").closest('tr').querySelector('.save-state').textContent",
            |v| v.as_str() == Some(saved.as_str()),
        )
        .await;

    // A delivery shows in the log with its outcome in French.
    insert_deal(&herald, "Affaire française");
    receiver.wait_for(1, STEP).await;
    let badge = browser
        .reload_until(
            "(() => { const b = document.querySelector('.deliveries li .badge'); return b ? b.textContent : null; })()",
            |v| v.is_string(),
        )
        .await;
    assert_eq!(badge, fr("outcome-success"));

    // The receiver fails; "only failures" lists the failures, labelled in French.
    receiver.answer_always(Answer::status(500));
    insert_deal(&herald, "Affaire en échec");
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let (_, failed) = herald
            .get(&format!("/api/v1/hooks/{hook_id}/events?status=failed"))
            .await;
        if failed["events"].as_array().unwrap().len() == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{failed}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser.goto(&hook_path).await;
    browser.wait("#only-failures").await.click().await.unwrap();
    let http_error = fr("outcome-http-error");
    browser
        .until(
            "Array.from(document.querySelectorAll('.deliveries li .badge')).map(b => b.textContent)",
            |v| {
                v.as_array().is_some_and(|a| {
                    !a.is_empty() && a.iter().all(|t| t.as_str() == Some(http_error.as_str()))
                })
            },
        )
        .await;
    browser.screenshot("fr-hook").await;

    // Retrying the failed event answers in French, beside the events.
    receiver.answer_always(Answer::status(200));
    browser
        .goto(&format!("{hook_path}?status=failed#events"))
        .await;
    browser
        .wait("#events-table tbody tr button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    let banner = browser.text(".banner-success").await;
    assert!(
        banner.starts_with(&leading_words("fr", "banner-event-retried")),
        "{banner}"
    );
    browser.wait("html[lang=fr]").await;

    // The choice is remembered by the next page, and the scripts page speaks it too.
    browser.goto("/admin/scripts").await;
    browser.wait("html[lang=fr]").await;
    browser.screenshot("fr-scripts").await;
    browser.goto("/admin").await;
    browser.wait("html[lang=fr]").await;
    browser.screenshot("fr-webhooks").await;
    browser.close().await;
    receiver.stop();
    herald.stop().await;
}
