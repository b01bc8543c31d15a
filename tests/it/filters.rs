//! Hooks' filters (#22): a rhai expression per hook, applied at the fan-out, checked when saved,
//! tried on samples, and, when it fails on an event, holding that event where the administrator
//! sees it until the filter is fixed.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

const STEP: Duration = Duration::from_secs(10);

/// The events of a hook, through the API.
async fn events_of(herald: &TestHerald, hook_id: &str) -> Vec<serde_json::Value> {
    let (status, body) = herald.get(&format!("/api/v1/hooks/{hook_id}/events")).await;
    assert_eq!(status, 200, "{body}");
    body["events"].as_array().unwrap().clone()
}

/// Waits until the hook's events satisfy `check`.
async fn events_become(
    herald: &TestHerald,
    hook_id: &str,
    what: &str,
    check: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    for _ in 0..200 {
        let events = events_of(herald, hook_id).await;
        if check(&events) {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{what}: the events are {:?}",
        events_of(herald, hook_id).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_subscriptions_to_one_trigger_one_filtered_receive_exactly_the_matching_events() {
    let herald = TestHerald::demo(|_| {}).await;
    let receiver = TestReceiver::start().await;
    herald
        .subscribe("NewOpportunity", &receiver.url("/all"))
        .await;
    let (status, filtered) = herald
        .post(
            "/EPT_WebhookSubscribe",
            json!({
                "event": "NewOpportunity",
                "target_url": receiver.url("/lyon"),
                "filter": "payload.amount >= 100000 && payload.company.city == \"Lyon\"",
            }),
        )
        .await;
    assert_eq!(status, 201, "{filtered}");
    let filtered_id = filtered["id"].as_str().unwrap().to_owned();

    for (title, amount, company, project) in [
        ("Big in Lyon", 250_000.0, 1, 10),
        ("Small in Lyon", 5_000.0, 1, 10),
        ("Big in Hamburg", 300_000.0, 2, 20),
    ] {
        herald.insert_deal(Deal {
            amount: Some(amount),
            company_id: Some(company),
            project_id: Some(project),
            is_project: true,
            ..Deal::titled(title)
        });
    }
    let got = receiver.wait_for(4, STEP).await;
    // Let a stray delivery arrive, if there were one.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got_all: Vec<String> = receiver
        .received()
        .iter()
        .filter(|r| r.path == "/all")
        .map(|r| r.json()["title"].as_str().unwrap().to_owned())
        .collect();
    let got_lyon: Vec<String> = receiver
        .received()
        .iter()
        .filter(|r| r.path == "/lyon")
        .map(|r| r.json()["title"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(got.len(), 4);
    assert_eq!(got_all.len(), 3, "{got_all:?}");
    assert_eq!(got_lyon, ["Big in Lyon"]);

    let (_, hook) = herald.get(&format!("/api/v1/hooks/{filtered_id}")).await;
    assert_eq!(
        hook["filter"],
        "payload.amount >= 100000 && payload.company.city == \"Lyon\""
    );
    assert_eq!(hook["filtered_out"], 2, "{hook}");
    // The receipt comes before the attempt's record.
    let summary = herald
        .get_until(&format!("/api/v1/hooks/{filtered_id}/summary"), |s| {
            s["delivered"] == 1
        })
        .await;
    assert_eq!(summary["filtered_out"], 2, "{summary}");
    assert_eq!(summary["delivered"], 1, "{summary}");
    // The events the filter kept out made no delivery: only the one it let through is listed.
    assert_eq!(events_of(&herald, &filtered_id).await.len(), 1);
    let metrics = herald
        .client
        .get(herald.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!(
            "herald_hook_events_filtered_out{{hook=\"{filtered_id}\"}} 2"
        )),
        "{metrics}"
    );
    receiver.stop();
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_that_does_not_compile_is_refused_with_its_line_and_column_and_nothing_is_stored()
{
    let herald = TestHerald::demo(|_| {}).await;
    let receiver = TestReceiver::start().await;
    let broken = "payload.amount >=\n  && true";
    let (status, body) = herald
        .post(
            "/api/v1/hooks",
            json!({"target_url": receiver.url("/x"), "company_id": 1,
                   "events": ["NewOpportunity"], "filter": broken}),
        )
        .await;
    assert_error(status, &body, 422, "invalid_filter");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("filter:2:3"), "line and column: {message}");

    let (status, body) = herald
        .post(
            "/EPT_WebhookSubscribe",
            json!({"event": "NewOpportunity", "target_url": receiver.url("/x"),
                   "filter": "paylod.amount > 1"}),
        )
        .await;
    assert_error(status, &body, 422, "invalid_filter");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("paylod"),
        "names the unknown variable: {body}"
    );
    let (_, hooks) = herald.get("/api/v1/hooks").await;
    assert_eq!(hooks["total"], 0, "nothing was stored: {hooks}");

    // On a hook that exists, a broken filter changes nothing; null removes a good one.
    let hook = herald
        .create_hook(json!({"target_url": receiver.url("/x"), "company_id": 1,
                            "events": ["NewOpportunity"], "filter": "payload.amount > 10"}))
        .await;
    let id = hook["id"].as_str().unwrap();
    let path = format!("/api/v1/hooks/{id}");
    let (status, body) = herald
        .send("PATCH", &path, Some(json!({"filter": "payload.amount >"})))
        .await;
    assert_error(status, &body, 422, "invalid_filter");
    assert_eq!(herald.get(&path).await.1["filter"], "payload.amount > 10");
    let (status, body) = herald
        .send("PATCH", &path, Some(json!({"filter": null})))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["filter"], serde_json::Value::Null);
    receiver.stop();
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_that_fails_on_an_event_holds_it_visibly_until_the_fixed_filter_judges_it() {
    let herald = TestHerald::demo(|_| {}).await;
    let receiver = TestReceiver::start().await;
    // A deal without an amount: `().to_int()` is an error, not false (as `() > 1` would be).
    let hook = herald
        .create_hook(json!({"target_url": receiver.url("/big"), "company_id": 1,
                            "events": ["NewOpportunity"], "filter": "payload.amount.to_int() > 100000"}))
        .await;
    let id = hook["id"].as_str().unwrap().to_owned();
    herald.insert_deal(Deal {
        company_id: Some(1),
        project_id: Some(10),
        is_project: true,
        ..Deal::titled("No amount yet")
    });
    herald.insert_deal(Deal {
        amount: Some(500_000.0),
        company_id: Some(1),
        project_id: Some(10),
        is_project: true,
        ..Deal::titled("Large")
    });
    let got = receiver.wait_for(1, STEP).await;
    assert_eq!(got[0].json()["title"], "Large");
    let events = events_become(&herald, &id, "the failed judgement is listed", |events| {
        events.iter().any(|e| !e["filter_error"].is_null())
    })
    .await;
    let held = events
        .iter()
        .find(|e| !e["filter_error"].is_null())
        .unwrap();
    assert_eq!(held["status"], "failed");
    assert_eq!(held["attempts"], 0);
    let error = held["filter_error"].as_str().unwrap();
    assert!(error.contains("filter:1:"), "with line and column: {error}");
    let held_id = held["id"].as_str().unwrap().to_owned();

    // Retried as it is, the filter still fails: refused, still held, nothing sent.
    let retry = format!("/api/v1/hooks/{id}/events/{held_id}/retry");
    let (status, body) = herald.post(&retry, json!({})).await;
    assert_error(status, &body, 422, "filter_failed");
    // The bulk recovery leaves it to the filter as well.
    let (status, body) = herald
        .post(
            &format!("/api/v1/hooks/{id}/retry-failed"),
            json!({"since": "2000-01-01T00:00:00Z"}),
        )
        .await;
    assert!(status < 300, "{status} {body}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 1, "the held event was not sent");

    // Fixed: the held event is judged again at once, lets through, and is delivered.
    let (status, body) = herald
        .send(
            "PATCH",
            &format!("/api/v1/hooks/{id}"),
            Some(json!({"filter": "payload.amount == () || payload.amount.to_int() > 100000"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let got = receiver.wait_for(2, STEP).await;
    assert_eq!(got[1].json()["title"], "No amount yet");
    events_become(&herald, &id, "nothing is held any more", |events| {
        events.iter().all(|e| e["filter_error"].is_null())
            && events.iter().all(|e| e["status"] == "delivered")
    })
    .await;
    receiver.stop();
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_is_tried_on_the_hooks_samples_before_it_goes_live() {
    let herald = TestHerald::demo(|_| {}).await;
    let receiver = TestReceiver::start().await;
    herald.insert_deal(Deal {
        amount: Some(2_000.0),
        company_id: Some(2),
        project_id: Some(20),
        is_project: true,
        ..Deal::titled("Tiny")
    });
    let hook = herald
        .create_hook(json!({"target_url": receiver.url("/x"), "company_id": 1,
                            "events": ["NewOpportunity", "Deal.update"]}))
        .await;
    let id = hook["id"].as_str().unwrap();
    let test = format!("/api/v1/hooks/{id}/filter/test");
    let (status, body) = herald
        .post(
            &test,
            json!({"filter": "if event == \"Deal.update\" { payload.row.amount > 1000 } else { payload.amount >= 100000 }"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let samples = body["samples"].as_array().unwrap();
    let opportunity = |title: &str| {
        samples
            .iter()
            .find(|s| s["event"] == "NewOpportunity" && s["payload"]["title"] == title)
            .unwrap_or_else(|| panic!("a sample of {title}: {body}"))
    };
    assert_eq!(opportunity("Facade renovation")["matches"], true);
    assert_eq!(opportunity("Tiny")["matches"], false);
    let update = samples
        .iter()
        .find(|s| s["event"] == "Deal.update")
        .expect("the newest deal as a Deal.update sample");
    assert_eq!(update["payload"]["row"]["title"], "Tiny");
    assert_eq!(update["matches"], true);

    // A filter that fails on a sample says so, with the error; one that does not compile is 422.
    let (_, body) = herald
        .post(&test, json!({"filter": "payload.company.city == \"Lyon\""}))
        .await;
    let update = body["samples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["event"] == "Deal.update")
        .unwrap();
    assert_eq!(update["matches"], serde_json::Value::Null);
    assert!(
        update["error"].as_str().unwrap().contains("filter:1:"),
        "{update}"
    );
    let (status, body) = herald.post(&test, json!({"filter": "payload."})).await;
    assert_error(status, &body, 422, "invalid_filter");
    // Nothing was saved.
    let (_, hook) = herald.get(&format!("/api/v1/hooks/{id}")).await;
    assert_eq!(hook["filter"], serde_json::Value::Null);
    receiver.stop();
    herald.stop().await;
}
