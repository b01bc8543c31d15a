//! Test sends (#22): one sample event sent to a hook at once, through the normal delivery path,
//! marked as a test in the deliveries log and the event history.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_send_arrives_signed_with_the_hooks_header_and_is_marked_as_a_test() {
    let herald = TestHerald::demo(|_| {}).await;
    let receiver = TestReceiver::start().await;
    receiver.answer_always(Answer {
        body: "thanks".into(),
        ..Answer::status(200)
    });
    let hook = herald
        .create_hook(json!({"target_url": receiver.url("/t"), "company_id": 1,
                            "authorization": "Bearer test-send-credential",
                            "events": ["NewOpportunity", "Deal.update"]}))
        .await;
    let id = hook["id"].as_str().unwrap().to_owned();
    let secret = hook["secret"].as_str().unwrap().to_owned();

    // No body: the hook's first event, answered once the endpoint has.
    let (status, sent) = herald
        .send("POST", &format!("/api/v1/hooks/{id}/test"), None)
        .await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["event"], "Deal.update", "events are listed sorted");
    assert_eq!(sent["status"], "delivered");
    assert_eq!(sent["attempt"]["response_status"], 200);
    assert_eq!(sent["attempt"]["response_body"], "thanks");
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    let request = &got[0];
    assert_eq!(
        request.header("authorization"),
        "Bearer test-send-credential"
    );
    assert_eq!(request.json()["resource_name"], "Deal");
    assert_eq!(request.json()["event_type"], "update");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    herald::delivery::signing::verify(
        &secret,
        request.header("webhook-id"),
        request.header("webhook-timestamp"),
        request.header("webhook-signature"),
        &request.body,
        now,
        300,
    )
    .expect("signed with the hook's secret");
    assert_eq!(request.header("webhook-id"), sent["webhook_id"]);

    // A trigger: perform-list's newest sample.
    let (status, sent) = herald
        .post(
            &format!("/api/v1/hooks/{id}/test"),
            json!({"event": "NewOpportunity"}),
        )
        .await;
    assert_eq!(status, 200, "{sent}");
    let got = receiver.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(got[1].json()["title"], "Facade renovation");
    assert_eq!(got[1].header("herald-event"), "NewOpportunity");

    // Marked as tests in the deliveries log and the event history.
    let (_, log) = herald.get(&format!("/api/v1/hooks/{id}/deliveries")).await;
    let deliveries = log["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 2, "{log}");
    assert!(deliveries.iter().all(|d| d["test"] == true), "{log}");
    let (_, events) = herald.get(&format!("/api/v1/hooks/{id}/events")).await;
    assert!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["test"] == true),
        "{events}"
    );

    // What cannot be sent says why, and sends nothing.
    let (status, body) = herald
        .post(
            &format!("/api/v1/hooks/{id}/test"),
            json!({"event": "DealWon"}),
        )
        .await;
    assert_error(status, &body, 422, "event_not_selected");
    let (status, body) = herald
        .post(
            "/api/v1/hooks/hook_00000000000000000000000000000000/test",
            json!({}),
        )
        .await;
    assert_error(status, &body, 404, "unknown_hook");
    herald
        .send(
            "PATCH",
            &format!("/api/v1/hooks/{id}"),
            Some(json!({"enabled": false})),
        )
        .await;
    let (status, body) = herald
        .post(&format!("/api/v1/hooks/{id}/test"), json!({}))
        .await;
    assert_error(status, &body, 409, "hook_disabled");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.received().len(), 2);
    receiver.stop();
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_send_to_a_failing_endpoint_says_what_it_answered() {
    let herald = TestHerald::demo(|_| {}).await;
    let receiver = TestReceiver::start().await;
    receiver.answer_always(Answer {
        body: "{\"error\":\"no such route\"}".into(),
        ..Answer::status(404)
    });
    let hook = herald
        .create_hook(
            json!({"target_url": receiver.url("/wrong"), "company_id": 1,
                            "events": ["NewOpportunity"]}),
        )
        .await;
    let id = hook["id"].as_str().unwrap();
    let (status, sent) = herald
        .post(&format!("/api/v1/hooks/{id}/test"), json!({}))
        .await;
    assert_eq!(status, 200, "{sent}");
    assert!(
        sent["status"] == "retrying" || sent["status"] == "failed",
        "{sent}"
    );
    assert_eq!(sent["attempt"]["outcome"], "http_error");
    assert_eq!(sent["attempt"]["response_status"], 404);
    assert_eq!(
        sent["attempt"]["response_body"],
        "{\"error\":\"no such route\"}"
    );
    receiver.stop();
    herald.stop().await;
}
