//! The admin API: scoped hooks, the resource grid, the deliveries log, the event history and its
//! actions, retention, masking, bad input, and the OpenAPI document.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

fn insert_deal(herald: &TestHerald, title: &str, project_id: i64, company_id: i64) -> i64 {
    herald.insert_deal(Deal {
        project_id: Some(project_id),
        company_id: Some(company_id),
        ..Deal::titled(title)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_level_hook_receives_its_projects_changes_and_not_another_projects() {
    let herald = TestHerald::demo(|_| {}).await;
    let project_receiver = TestReceiver::start().await;
    let company_receiver = TestReceiver::start().await;
    let project_hook = herald
        .create_hook(json!({
            "target_url": project_receiver.url("/project-10"),
            "project_id": 10,
            "events": ["Deal.create"],
        }))
        .await;
    assert_eq!(project_hook["scope"], "project");
    herald
        .create_hook(json!({
            "target_url": company_receiver.url("/company-2"),
            "company_id": 2,
            "events": ["Deal.create"],
        }))
        .await;

    let in_project = insert_deal(&herald, "Tower lobby", 10, 1);
    let elsewhere = insert_deal(&herald, "Harbour offices", 20, 2);

    let got = project_receiver.wait_for(1, Duration::from_secs(10)).await;
    let envelope = got[0].json();
    assert_eq!(envelope["resource_name"], "Deal");
    assert_eq!(envelope["resource_id"], in_project);
    assert_eq!(envelope["event_type"], "create");
    assert_eq!(envelope["project_id"], 10);
    assert_eq!(envelope["company_id"], 1);
    assert_eq!(envelope["row"]["title"], "Tower lobby");
    assert_eq!(envelope["old_row"], Value::Null);
    assert!(envelope["id"].as_str().unwrap().starts_with("evt_"));
    assert!(envelope["timestamp"].as_str().unwrap().ends_with('Z'));
    assert!(got[0].header("webhook-signature").starts_with("v1,"));
    assert_eq!(got[0].header("herald-event"), "Deal.create");

    let got = company_receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].json()["resource_id"], elsewhere);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        project_receiver.received().len(),
        1,
        "only its project's deal"
    );
    assert_eq!(
        company_receiver.received().len(),
        1,
        "only its company's deal"
    );

    // A row that names only its project is placed in the project's company.
    herald
        .app()
        .execute("INSERT INTO \"Deal\" (title, is_project, project_id) VALUES ('No company column value', 0, 20)", &[]);
    let got = company_receiver.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(got[1].json()["company_id"], 2);
    assert_eq!(got[1].json()["row"]["company_id"], Value::Null);
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticking_a_cell_delivers_the_next_change_and_clearing_it_stops_the_one_after() {
    let herald = TestHerald::demo(|_| {}).await;
    let receiver = TestReceiver::start().await;
    let hook = herald
        .create_hook(json!({"target_url": receiver.url("/grid"), "company_id": 1}))
        .await;
    let id = hook["id"].as_str().unwrap();

    let (status, cell) = herald
        .send("PUT", &format!("/api/v1/hooks/{id}/grid/Deal/update"), None)
        .await;
    assert_eq!(status, 200, "{cell}");
    assert_eq!(cell["selected"], true);
    let (_, grid) = herald.get(&format!("/api/v1/hooks/{id}/grid")).await;
    let deal_row = grid["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == "Deal")
        .unwrap()
        .clone();
    assert_eq!(
        deal_row,
        json!({"resource": "Deal", "create": false, "update": true, "delete": false})
    );

    let mut app = herald.app();
    app.execute("UPDATE \"Deal\" SET amount = 1 WHERE id = 1000", &[]);
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    let envelope = got[0].json();
    assert_eq!(envelope["event_type"], "update");
    assert_eq!(envelope["row"]["amount"], 1.0);
    assert_eq!(envelope["old_row"]["amount"], 120000.0);

    let (status, _) = herald
        .send(
            "DELETE",
            &format!("/api/v1/hooks/{id}/grid/Deal/update"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    app.execute("UPDATE \"Deal\" SET amount = 2 WHERE id = 1000", &[]);

    // A table without a notification script is tracked as soon as one of its cells is ticked.
    let (status, _) = herald
        .send(
            "PUT",
            &format!("/api/v1/hooks/{id}/grid/Company/update"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    app.execute(
        "UPDATE \"Company\" SET city = 'Villeurbanne' WHERE id = 1",
        &[],
    );
    let got = receiver.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(got[1].json()["resource_name"], "Company");
    assert_eq!(got[1].json()["row"]["city"], "Villeurbanne");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        receiver.received().len(),
        2,
        "the deal update after the clear was not delivered"
    );
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deliveries_log_pages_25_at_a_time_without_gaps_and_filters_failures() {
    let herald = TestHerald::demo(|config| {
        config.delivery.retry_schedule = Vec::new();
    })
    .await;
    let receiver = TestReceiver::start().await;
    for i in 0..60 {
        receiver.queue(if i % 5 == 0 {
            Answer {
                status: 500,
                headers: vec![("x-failure", "yes".into())],
                body: "boom".into(),
                delay: Duration::ZERO,
            }
        } else {
            Answer::status(200)
        });
    }
    let hook = herald
        .create_hook(json!({
            "target_url": receiver.url("/log"),
            "company_id": 1,
            "authorization": "Basic c2VjcmV0OnBhc3M=",
            "events": ["Deal.create"],
        }))
        .await;
    let id = hook["id"].as_str().unwrap().to_owned();
    let mut app = herald.app();
    for i in 0..60 {
        app.execute(
            "INSERT INTO \"Deal\" (title, is_project, company_id) VALUES (?1, 0, 1)",
            &[Cell::Text(format!("deal {i}"))],
        );
    }
    let got = receiver.wait_for(60, Duration::from_secs(20)).await;
    assert_eq!(got[0].header("authorization"), "Basic c2VjcmV0OnBhc3M=");
    let log = format!("/api/v1/hooks/{id}/deliveries");
    herald
        .get_until(
            &format!("/api/v1/hooks/{id}/events?status=delivered&limit=100"),
            |b| b["events"].as_array().unwrap().len() == 48,
        )
        .await;
    // The failures too: an attempt that failed may be recorded after the last success.
    herald
        .get_until(&format!("{log}?limit=100"), |b| {
            b["deliveries"].as_array().unwrap().len() == 60
        })
        .await;

    let (_, first) = herald.get(&log).await;
    let first_ids: Vec<i64> = ids(&first);
    assert_eq!(first_ids.len(), 25);
    // New deliveries arriving between pages do not shift the pages being read.
    for i in 0..5 {
        receiver.queue(Answer::status(200));
        app.execute(
            "INSERT INTO \"Deal\" (title, is_project, company_id) VALUES (?1, 0, 1)",
            &[Cell::Text(format!("late {i}"))],
        );
    }
    receiver.wait_for(65, Duration::from_secs(10)).await;
    let mut all = first_ids.clone();
    let mut cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let mut pages = vec![first_ids.len()];
    loop {
        let (status, page) = herald.get(&format!("{log}?cursor={cursor}")).await;
        assert_eq!(status, 200, "{page}");
        let page_ids = ids(&page);
        pages.push(page_ids.len());
        all.extend(page_ids);
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(pages, vec![25, 25, 10]);
    assert!(
        all.windows(2).all(|w| w[0] > w[1]),
        "newest first, no duplicate"
    );
    assert_eq!(all.len(), 60);

    let (_, failures) = herald
        .get(&format!("{log}?only_failures=true&limit=100"))
        .await;
    let failures = failures["deliveries"].as_array().unwrap().clone();
    assert_eq!(failures.len(), 12);
    assert!(failures
        .iter()
        .all(|f| f["response_status"] == 500 && f["succeeded"] == false));

    let failure_id = failures[0]["id"].as_i64().unwrap();
    let (status, detail) = herald.get(&format!("{log}/{failure_id}")).await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["response"]["status"], 500);
    assert_eq!(detail["response"]["body"], "boom");
    assert_eq!(detail["response"]["headers"]["x-failure"], "yes");
    assert_eq!(detail["request"]["url"], receiver.url("/log"));
    assert_eq!(
        detail["request"]["headers"]["authorization"],
        "Basic ********"
    );
    assert!(detail["request"]["headers"]["webhook-id"]
        .as_str()
        .unwrap()
        .starts_with("msg_"));
    assert_eq!(detail["request"]["payload"]["resource_name"], "Deal");
    assert!(!detail.to_string().contains("c2VjcmV0"), "{detail}");
    herald.stop().await;
}

fn ids(page: &Value) -> Vec<i64> {
    page["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrying_and_discarding_events_from_the_history() {
    let herald = TestHerald::demo(|config| {
        // One retry, far away: a failed first attempt leaves the event "retrying" for the test to act on.
        config.delivery.retry_schedule = vec![Duration::from_secs(600)];
    })
    .await;
    let receiver = TestReceiver::start().await;
    receiver.queue(Answer::status(500));
    receiver.queue(Answer::status(500));
    let hook = herald
        .create_hook(json!({
            "target_url": receiver.url("/history"),
            "company_id": 1,
            "events": ["NewOpportunity"],
        }))
        .await;
    let id = hook["id"].as_str().unwrap().to_owned();
    let mut app = herald.app();
    app.execute(
        "INSERT INTO \"Deal\" (title, is_project, company_id) VALUES ('first', 1, 1)",
        &[],
    );
    app.execute(
        "INSERT INTO \"Deal\" (title, is_project, company_id) VALUES ('second', 1, 1)",
        &[],
    );
    receiver.wait_for(2, Duration::from_secs(10)).await;
    let history = format!("/api/v1/hooks/{id}/events");
    let retrying = herald
        .get_until(&format!("{history}?status=retrying"), |b| {
            b["events"].as_array().unwrap().len() == 2
        })
        .await;
    let events = retrying["events"].as_array().unwrap();
    let (second, first) = (events[0].clone(), events[1].clone());
    assert_eq!(first["resource_name"], "Deal");
    assert_eq!(first["event_type"], "create");
    assert_eq!(first["event"], "NewOpportunity");
    assert_eq!(first["attempts"], 1);

    // Retry the first now: it is delivered once more, under the same webhook-id.
    let (status, body) = herald
        .post(
            &format!("{history}/{}/retry", first["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let got = receiver.wait_for(3, Duration::from_secs(10)).await;
    assert_eq!(
        got[2].header("webhook-id"),
        first["webhook_id"].as_str().unwrap()
    );
    assert_eq!(got[2].json()["title"], "first");
    let delivered = herald
        .get_until(&format!("{history}?status=delivered"), |b| {
            b["events"].as_array().unwrap().len() == 1
        })
        .await;
    assert_eq!(delivered["events"][0]["id"], first["id"]);
    assert_eq!(delivered["events"][0]["attempts"], 2);

    // Discard the second: it is never delivered; discarding it again is a conflict.
    let second_id = second["id"].as_str().unwrap();
    let (status, body) = herald
        .post(&format!("{history}/{second_id}/discard"), json!({}))
        .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("discarded")));
    let (status, body) = herald
        .post(&format!("{history}/{second_id}/discard"), json!({}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("event_not_waiting"))
    );
    let (_, discarded) = herald.get(&format!("{history}?status=discarded")).await;
    assert_eq!(discarded["events"][0]["id"], second_id);

    // Filters and unknown events.
    let (_, none) = herald.get(&format!("{history}?resource=Contact")).await;
    assert_eq!(none["events"], json!([]));
    let (_, creates) = herald.get(&format!("{history}?event_type=create")).await;
    assert_eq!(creates["events"].as_array().unwrap().len(), 2);
    let (status, body) = herald
        .post(&format!("{history}/evt_nope/retry"), json!({}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("unknown_event"))
    );

    // Recovery after an outage: every failed event since a time, here none.
    let (status, body) = herald
        .post(
            &format!("/api/v1/hooks/{id}/retry-failed"),
            json!({"since": "2020-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!((status, body["retried"].as_u64()), (202, Some(0)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 3);
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_events_older_than_the_window() {
    let herald = TestHerald::demo(|config| {
        // Long enough that a slow machine still sees the event before it goes.
        config.retention.max_age = Duration::from_secs(5);
        config.retention.interval = Duration::from_millis(200);
    })
    .await;
    let receiver = TestReceiver::start().await;
    let hook = herald
        .create_hook(json!({
            "target_url": receiver.url("/retention"),
            "company_id": 1,
            "events": ["Deal.create"],
        }))
        .await;
    let id = hook["id"].as_str().unwrap().to_owned();
    insert_deal(&herald, "old news", 10, 1);
    receiver.wait_for(1, Duration::from_secs(10)).await;
    let history = format!("/api/v1/hooks/{id}/events");
    herald
        .get_until(&history, |b| b["events"].as_array().unwrap().len() == 1)
        .await;
    // The attempt is recorded just after the receiver had it.
    let log = herald
        .get_until(&format!("/api/v1/hooks/{id}/deliveries"), |b| {
            !b["deliveries"].as_array().unwrap().is_empty()
        })
        .await;
    assert_eq!(log["deliveries"].as_array().unwrap().len(), 1);

    // Past the window the event goes, and its attempts with it.
    herald
        .get_until(&history, |b| b["events"].as_array().unwrap().is_empty())
        .await;
    let (_, log) = herald.get(&format!("/api/v1/hooks/{id}/deliveries")).await;
    assert_eq!(log["deliveries"], json!([]));
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_and_authorization_headers_never_come_back_unmasked() {
    let herald = TestHerald::demo(|_| {}).await;
    let receiver = TestReceiver::start().await;
    let hook = herald
        .create_hook(json!({
            "target_url": receiver.url("/masked"),
            "project_id": 10,
            "authorization": "Bearer top-secret-credential",
            "events": ["Deal.update"],
        }))
        .await;
    let id = hook["id"].as_str().unwrap().to_owned();
    let secret = hook["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_") && secret.len() > 40);
    assert_eq!(hook["authorization"], "Bearer ********");

    let leaks = |body: &Value| {
        let text = body.to_string();
        text.contains("top-secret-credential") || text.contains(&secret[6..])
    };
    let (_, got) = herald.get(&format!("/api/v1/hooks/{id}")).await;
    assert!(!leaks(&got), "{got}");
    assert!(got["secret"]
        .as_str()
        .unwrap()
        .starts_with("whsec_********"));
    let (_, listed) = herald.get("/api/v1/hooks").await;
    assert!(!leaks(&listed), "{listed}");
    let (_, patched) = herald
        .send(
            "PATCH",
            &format!("/api/v1/hooks/{id}"),
            Some(json!({"description": "CRM sync"})),
        )
        .await;
    assert_eq!(patched["description"], "CRM sync");
    assert!(!leaks(&patched), "{patched}");

    // Rotation: the new secret shows once; both sign during the grace period.
    let (status, rotated) = herald
        .post(
            &format!("/api/v1/hooks/{id}/rotate-secret"),
            json!({"grace_seconds": 3600}),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    assert!(rotated["previous_secret_valid_until"].is_string());
    let (_, got) = herald.get(&format!("/api/v1/hooks/{id}")).await;
    assert!(!got.to_string().contains(&new_secret[6..]), "{got}");

    herald.app().execute(
        "UPDATE \"Deal\" SET stage = 'negotiation' WHERE id = 1000",
        &[],
    );
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    let delivery = &got[0];
    assert_eq!(
        delivery.header("authorization"),
        "Bearer top-secret-credential"
    );
    let signatures = delivery.header("webhook-signature");
    assert_eq!(signatures.split(' ').count(), 2, "{signatures}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for key in [&secret, &new_secret] {
        herald::delivery::signing::verify(
            key,
            delivery.header("webhook-id"),
            delivery.header("webhook-timestamp"),
            signatures,
            &delivery.body,
            now,
            300,
        )
        .unwrap_or_else(|e| panic!("{key}: {e}"));
    }
    // The attempt is recorded just after the receiver had it.
    let log = herald
        .get_until(&format!("/api/v1/hooks/{id}/deliveries"), |b| {
            !b["deliveries"].as_array().unwrap().is_empty()
        })
        .await;
    let attempt = log["deliveries"][0]["id"].as_i64().unwrap();
    let (_, detail) = herald
        .get(&format!("/api/v1/hooks/{id}/deliveries/{attempt}"))
        .await;
    assert!(!leaks(&detail), "{detail}");

    // Removing the header.
    let (_, cleared) = herald
        .send(
            "PATCH",
            &format!("/api/v1/hooks/{id}"),
            Some(json!({"authorization": null})),
        )
        .await;
    assert_eq!(cleared["authorization"], Value::Null);
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_4xx_and_changes_nothing() {
    let herald = TestHerald::demo(|_| {}).await;
    let receiver = TestReceiver::start().await;
    let hook = herald
        .create_hook(json!({"target_url": receiver.url("/ok"), "company_id": 1}))
        .await;
    let id = hook["id"].as_str().unwrap().to_owned();
    let target = receiver.url("/x");

    let cases: Vec<(&str, String, Option<Value>, u16, &str)> = vec![
        (
            "POST",
            "/api/v1/hooks".into(),
            Some(json!({"target_url": target})),
            422,
            "invalid_scope",
        ),
        (
            "POST",
            "/api/v1/hooks".into(),
            Some(json!({"target_url": target, "company_id": 1, "project_id": 10})),
            422,
            "invalid_scope",
        ),
        (
            "POST",
            "/api/v1/hooks".into(),
            Some(json!({"company_id": 1})),
            422,
            "missing_field",
        ),
        (
            "POST",
            "/api/v1/hooks".into(),
            Some(json!({"target_url": "ftp://example.com/x", "company_id": 1})),
            422,
            "invalid_target_url",
        ),
        (
            "POST",
            "/api/v1/hooks".into(),
            Some(json!({"target_url": "http://10.0.0.1/x", "company_id": 1})),
            422,
            "refused_target",
        ),
        (
            "POST",
            "/api/v1/hooks".into(),
            Some(json!({"target_url": "http://no-such-host.invalid/x", "company_id": 1})),
            422,
            "unresolvable_target",
        ),
        (
            "POST",
            "/api/v1/hooks".into(),
            Some(json!({"target_url": target, "company_id": 1, "events": ["Invoice.create"]})),
            422,
            "unknown_resource",
        ),
        (
            "POST",
            "/api/v1/hooks".into(),
            Some(json!({"target_url": target, "company_id": 1, "events": ["Deal.explode"]})),
            422,
            "unknown_action",
        ),
        (
            "POST",
            "/api/v1/hooks".into(),
            Some(json!({"target_url": target, "company_id": 1, "events": ["NoSuchTrigger"]})),
            422,
            "unknown_event",
        ),
        (
            "POST",
            "/api/v1/hooks".into(),
            Some(json!({"target_url": target, "company_id": 1, "authorization": "Basic a\nb"})),
            422,
            "invalid_authorization",
        ),
        (
            "POST",
            "/api/v1/hooks".into(),
            Some(json!({"target_url": target, "company_id": 1, "colour": "red"})),
            422,
            "invalid_body",
        ),
        (
            "GET",
            "/api/v1/hooks/hook_nope".into(),
            None,
            404,
            "unknown_hook",
        ),
        (
            "PATCH",
            "/api/v1/hooks/hook_nope".into(),
            Some(json!({"enabled": false})),
            404,
            "unknown_hook",
        ),
        (
            "PATCH",
            format!("/api/v1/hooks/{id}"),
            Some(json!({"target_url": "not a url"})),
            422,
            "invalid_target_url",
        ),
        (
            "DELETE",
            "/api/v1/hooks/hook_nope".into(),
            None,
            404,
            "unknown_hook",
        ),
        (
            "PUT",
            format!("/api/v1/hooks/{id}/grid/Invoice/create"),
            None,
            422,
            "unknown_resource",
        ),
        (
            "PUT",
            format!("/api/v1/hooks/{id}/grid/Deal/explode"),
            None,
            404,
            "unknown_action",
        ),
        (
            "PUT",
            "/api/v1/hooks/hook_nope/grid/Deal/create".into(),
            None,
            404,
            "unknown_hook",
        ),
        (
            "PUT",
            format!("/api/v1/hooks/{id}/triggers/NoSuchTrigger"),
            None,
            422,
            "unknown_event",
        ),
        (
            "GET",
            format!("/api/v1/hooks/{id}/deliveries?cursor=abc"),
            None,
            400,
            "invalid_cursor",
        ),
        (
            "GET",
            format!("/api/v1/hooks/{id}/deliveries?limit=101"),
            None,
            422,
            "invalid_limit",
        ),
        (
            "GET",
            format!("/api/v1/hooks/{id}/deliveries?only_failures=maybe"),
            None,
            400,
            "invalid_query",
        ),
        (
            "GET",
            format!("/api/v1/hooks/{id}/deliveries/999999"),
            None,
            404,
            "unknown_delivery",
        ),
        (
            "GET",
            "/api/v1/hooks/hook_nope/deliveries".into(),
            None,
            404,
            "unknown_hook",
        ),
        (
            "GET",
            format!("/api/v1/hooks/{id}/events?status=lost"),
            None,
            422,
            "invalid_status",
        ),
        (
            "GET",
            format!("/api/v1/hooks/{id}/events?event_type=explode"),
            None,
            422,
            "invalid_event_type",
        ),
        (
            "GET",
            format!("/api/v1/hooks/{id}/events?cursor=-4"),
            None,
            400,
            "invalid_cursor",
        ),
        (
            "GET",
            "/api/v1/hooks?cursor=42".into(),
            None,
            400,
            "invalid_cursor",
        ),
        (
            "GET",
            "/api/v1/hooks?limit=0".into(),
            None,
            422,
            "invalid_limit",
        ),
        (
            "POST",
            format!("/api/v1/hooks/{id}/retry-failed"),
            Some(json!({"since": "yesterday"})),
            422,
            "invalid_time",
        ),
        (
            "POST",
            format!("/api/v1/hooks/{id}/retry-failed"),
            Some(json!({})),
            422,
            "missing_field",
        ),
        (
            "POST",
            format!("/api/v1/hooks/{id}/rotate-secret"),
            Some(json!({"grace_seconds": 99999999})),
            422,
            "invalid_grace",
        ),
        (
            "PUT",
            "/api/v1/hooks".into(),
            None,
            405,
            "method_not_allowed",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let (got_status, got_body) = herald.send(method, &path, body).await;
        assert_eq!(got_status, status, "{method} {path}: {got_body}");
        assert_error(got_status, &got_body, status, code);
    }

    let oversized =
        json!({"target_url": target, "company_id": 1, "description": "x".repeat(2 << 20)});
    // A client of its own, so that the refused request's connection is not reused below.
    let response = reqwest::Client::new()
        .post(herald.url("/api/v1/hooks"))
        .bearer_auth(TOKEN)
        .json(&oversized)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    assert_error(
        status,
        &response.json().await.unwrap(),
        413,
        "body_too_large",
    );

    // Nothing was created or changed by any of that.
    let (_, listed) = herald.get("/api/v1/hooks").await;
    assert_eq!(listed["hooks"].as_array().unwrap().len(), 1);
    let (_, same) = herald.get(&format!("/api/v1/hooks/{id}")).await;
    assert_eq!(same["target_url"], hook["target_url"]);
    assert_eq!(same["events"], json!([]));
    assert_eq!(same["secret"].as_str().unwrap()[..14], *"whsec_********");
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_list_pages_by_cursor_and_filters_by_scope() {
    let herald = TestHerald::demo(|_| {}).await;
    let receiver = TestReceiver::start().await;
    let mut created = Vec::new();
    for i in 0..7 {
        let scope = if i % 2 == 0 {
            json!({"company_id": 1})
        } else {
            json!({"project_id": 10})
        };
        let mut body = json!({"target_url": receiver.url(&format!("/h{i}"))});
        body.as_object_mut()
            .unwrap()
            .extend(scope.as_object().unwrap().clone());
        created.push(
            herald.create_hook(body).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let mut seen = Vec::new();
    let mut path = "/api/v1/hooks?limit=3".to_owned();
    loop {
        let (status, page) = herald.get(&path).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(
            page["hooks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h["id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/hooks?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    created.reverse();
    assert_eq!(seen, created, "newest first, each once");
    let (_, company) = herald.get("/api/v1/hooks?company_id=1").await;
    assert_eq!(company["hooks"].as_array().unwrap().len(), 4);
    let (_, project) = herald.get("/api/v1/hooks?project_id=10").await;
    assert_eq!(project["hooks"].as_array().unwrap().len(), 3);
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalogue_lists_triggers_and_resource_events_with_samples() {
    let dir = tempfile::tempdir().unwrap();
    let scripts = demo_scripts(dir.path());
    std::fs::write(
        scripts.join("GetWebhookResponseBody_Broken.rhai"),
        "#{ broken: }",
    )
    .unwrap();
    let herald = TestHerald::start(test_config(dir.path(), &scripts)).await;
    let (status, catalogue) = herald.get("/api/v1/triggers").await;
    assert_eq!(status, 200, "{catalogue}");
    let triggers = catalogue["triggers"].as_array().unwrap();
    let names: Vec<&str> = triggers
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ContactRemoved", "DealWon", "NewOpportunity"]);
    let new_opportunity = &triggers[2];
    assert_eq!(
        new_opportunity["script"],
        "GetWebhookResponseBody_NewOpportunity.rhai"
    );
    assert_eq!(new_opportunity["status"], "ok");
    assert_eq!(new_opportunity["sample"]["id"], 1000);
    let resource_events = catalogue["resource_events"].as_array().unwrap();
    let deal_update = resource_events
        .iter()
        .find(|r| r["name"] == "Deal.update")
        .unwrap();
    assert_eq!(deal_update["resource"], "Deal");
    assert_eq!(deal_update["sample"]["resource_name"], "Deal");
    assert_eq!(deal_update["sample"]["event_type"], "update");
    assert!(deal_update["sample"]["row"]["title"].is_string());
    // A body script that does not compile is no trigger; the scripts listing says why.
    let (_, listing) = herald.get("/api/v1/scripts").await;
    let broken = listing["scripts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["file"] == "GetWebhookResponseBody_Broken.rhai")
        .unwrap()
        .clone();
    assert_eq!(broken["status"], "error");
    assert_eq!(broken["error"]["line"], 1);
    herald.stop().await;
}

/// Fills `{name}` segments with a value that routes but names nothing.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                match segment {
                    "{action}" => "create",
                    "{resource}" => "Deal",
                    _ => "x1",
                }
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_validates_and_matches_the_router() {
    let dir = tempfile::tempdir().unwrap();
    let scripts = demo_scripts(dir.path());
    let herald = TestHerald::start(test_config(dir.path(), &scripts)).await;
    let response = herald
        .client
        .get(herald.url("/api/v1/openapi.json"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let spec = oas3::from_json(&text).expect("an OpenAPI 3.1 document");
    assert!(spec.openapi.starts_with("3.1"), "{}", spec.openapi);
    let document: Value = serde_json::from_str(&text).unwrap();
    assert!(document["components"]["schemas"]["ErrorBody"].is_object());

    let methods = ["get", "post", "put", "patch", "delete"];
    let mut documented = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in methods {
            let declared = item.get(method).is_some();
            let url = concrete(path);
            let body = matches!(method, "post" | "put" | "patch").then(|| json!({}));
            let (status, answer) = herald.send(&method.to_uppercase(), &url, body).await;
            let code = answer["error"]["code"].as_str().unwrap_or("");
            if declared {
                documented.insert(format!("{} {path}", method.to_uppercase()));
                assert!(
                    code != "method_not_allowed" && !(code == "not_found" && status == 404),
                    "{method} {path} is documented but not routed: {status} {answer}"
                );
                for (status, _) in item[method]["responses"].as_object().unwrap() {
                    assert!(status.parse::<u16>().is_ok(), "{method} {path}: {status}");
                }
            } else {
                assert!(
                    code == "method_not_allowed" || status == 405,
                    "{method} {path} is routed but not documented: {status} {answer}"
                );
            }
        }
    }
    // What client generators name their methods by: one id per operation, naming the verb and
    // the resource (`list` was used three times, `get` and `update` said nothing); every operation
    // has a tag, a summary and a description; those that take no token say so.
    let mut ids = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in methods {
            let Some(operation) = item.get(method) else {
                continue;
            };
            let id = operation["operationId"].as_str().unwrap_or_default();
            assert!(
                id.len() > 4
                    && id.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                    && id.chars().all(|c| c.is_ascii_alphanumeric())
                    && id.chars().any(|c| c.is_ascii_uppercase()),
                "{method} {path}: operationId {id:?} is not a verb and a resource in camelCase"
            );
            assert!(ids.insert(id.to_owned()), "{id} is used twice");
            for field in ["summary", "description"] {
                assert!(
                    operation[field].as_str().is_some_and(|t| t.len() > 5),
                    "{method} {path} has no {field}"
                );
            }
            assert!(
                operation["tags"][0].is_string(),
                "{method} {path} has no tag"
            );
            let public = operation["security"].as_array().is_some_and(|s| {
                s.iter()
                    .all(|r| r.as_object().is_some_and(|o| o.is_empty()))
            });
            assert_eq!(
                public,
                ["/healthz", "/readyz", "/metrics"].contains(&path.as_str()),
                "{method} {path}: security {}",
                operation["security"]
            );
        }
    }
    for id in [
        "listHooks",
        "getHook",
        "tickGridCell",
        "listDeliveries",
        "retryEvent",
        "listScripts",
        "listTriggers",
    ] {
        assert!(ids.contains(id), "{id} missing from {ids:?}");
    }
    let description = document["info"]["description"].as_str().unwrap();
    assert!(description.contains("/metrics"), "{description}");
    for route in [
        "POST /EPT_WebhookSubscribe",
        "GET /EPT_WebhookPerformList",
        "POST /api/v1/hooks",
        "PUT /api/v1/hooks/{id}/grid/{resource}/{action}",
        "GET /api/v1/hooks/{id}/deliveries",
        "GET /api/v1/hooks/{id}/events",
        "POST /api/v1/hooks/{id}/events/{event_id}/retry",
        "GET /api/v1/triggers",
        "GET /api/v1/scripts",
        "GET /healthz",
    ] {
        assert!(
            documented.contains(route),
            "{route} missing from {documented:?}"
        );
    }
    // A path that is not in the document is not routed either.
    let (status, answer) = herald.get("/api/v1/nothing-here").await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_and_authorization_headers_are_encrypted_at_rest() {
    let dir = tempfile::tempdir().unwrap();
    let scripts = demo_scripts(dir.path());
    let config = test_config(dir.path(), &scripts);
    let db = config.db.clone();
    // A hook written in plain text by a tool without the key, before herald first ran...
    let plain = off_the_runtime(|| {
        herald::store::Store::open_database(
            &db,
            &config.postgres,
            herald::store::Secrets::none(),
            Duration::from_secs(2),
        )
        .unwrap()
        .create_hook(herald::store::NewHook {
            target_url: "http://127.0.0.1:9/old".into(),
            secret: "whsec_b2xkLXNlY3JldC1rZXk=".into(),
            authorization: Some("Basic b2xkOnBsYWlu".into()),
            description: String::new(),
            origin: herald::store::HookOrigin::Admin,
            scope: herald::store::Scope::Company(1),
            enabled: false,
            events: Vec::new(),
            made_by: None,
            filter: None,
            rate_limit_per_second: None,
        })
        .unwrap()
    });
    let herald = TestHerald::start(config.clone()).await;
    let receiver = TestReceiver::start().await;
    let hook = herald
        .create_hook(json!({
            "target_url": receiver.url("/sealed"),
            "company_id": 1,
            "authorization": "Bearer sealed-credential",
            "events": ["Deal.update"],
        }))
        .await;
    let secret = hook["secret"].as_str().unwrap().to_owned();

    // ...and the new one are both sealed in the database.
    let rows: Vec<(String, String, String)> = herald
        .app()
        .rows(
            "SELECT id, secret, \"authorization\" FROM herald_hooks",
            &[],
        )
        .iter()
        .map(|r| (r[0].text(), r[1].text(), r[2].text()))
        .collect();
    assert_eq!(rows.len(), 2);
    for (id, stored_secret, stored_authorization) in &rows {
        assert!(
            stored_secret.starts_with("enc:v1:"),
            "{id}: {stored_secret}"
        );
        assert!(stored_authorization.starts_with("enc:v1:"), "{id}");
        for plain_text in [
            "sealed-credential",
            &secret[6..],
            "b2xkOnBsYWlu",
            "b2xkLXNlY3JldC1rZXk",
        ] {
            assert!(
                !stored_secret.contains(plain_text) && !stored_authorization.contains(plain_text)
            );
        }
    }
    if let Some(file) = db.sqlite_path() {
        let dump: Vec<u8> = std::fs::read(file).unwrap();
        assert!(!String::from_utf8_lossy(&dump).contains("sealed-credential"));
    }

    // herald still opens them: the delivery carries the header and verifies with the secret.
    herald
        .app()
        .execute("UPDATE \"Deal\" SET stage = 'won' WHERE id = 1000", &[]);
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].header("authorization"), "Bearer sealed-credential");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    herald::delivery::signing::verify(
        &secret,
        got[0].header("webhook-id"),
        got[0].header("webhook-timestamp"),
        got[0].header("webhook-signature"),
        &got[0].body,
        now,
        300,
    )
    .unwrap();
    let reopened = off_the_runtime(|| herald.store().get_hook(&plain.id).unwrap().unwrap());
    assert_eq!(reopened.secret, "whsec_b2xkLXNlY3JldC1rZXk=");
    herald.stop().await;

    // With the wrong key herald refuses to start, and says why.
    let mut config = config;
    config.secret_key = Some(herald::store::Secrets::generate_key());
    let error =
        off_the_runtime(|| herald::server::prepare(&config).err()).expect("a wrong key is refused");
    assert!(
        format!("{error:#}").contains("secret key is not the database's"),
        "{error:#}"
    );
}
