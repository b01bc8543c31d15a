//! The path users walk first: subscribe, change a row from another connection, receive a signed POST
//! whose body is the body script's payload; sample with perform-list; unsubscribe.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::support::*;

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deal_inserted_by_another_connection_is_delivered_signed_with_the_body_script_payload() {
    let dir = tempfile::tempdir().unwrap();
    let scripts = demo_scripts(dir.path());
    let herald = TestHerald::start(test_config(dir.path(), &scripts)).await;
    let receiver = TestReceiver::start().await;
    let subscription = herald
        .subscribe("NewOpportunity", &receiver.url("/hooks/crm"))
        .await;
    assert_eq!(subscription["codeWebhookSubscription"], subscription["id"]);
    let secret = subscription["secret"].as_str().unwrap().to_owned();

    let mut app = herald.app();
    app.execute("INSERT INTO \"Deal\" (id, title, amount, is_project, company_id, project_id) VALUES (5000, 'Bridge', 250000, 1, 2, 20)", &[]);
    // Not a project: fires nothing.
    app.execute(
        "INSERT INTO \"Deal\" (id, title, is_project) VALUES (5001, 'Paint job', 0)",
        &[],
    );

    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    let delivery = &got[0];
    let payload = delivery.json();
    assert_eq!(payload["id"], 5000);
    assert_eq!(payload["title"], "Bridge");
    assert_eq!(payload["company"]["name"], "Borealis Builders");

    // Exactly what the body script renders for that row.
    let expected: serde_json::Value = {
        let config = test_config(dir.path(), &scripts);
        let mut out = Vec::new();
        off_the_runtime(|| {
            herald::commands::fire(&config, "NewOpportunity", 5000, true, &mut out).unwrap()
        });
        serde_json::from_slice(&out).unwrap()
    };
    assert_eq!(payload, expected);

    assert_eq!(delivery.header("content-type"), "application/json");
    assert_eq!(delivery.header("herald-event"), "NewOpportunity");
    assert!(delivery.header("user-agent").starts_with("herald/"));
    assert!(delivery.header("webhook-id").starts_with("msg_"));
    herald::delivery::signing::verify(
        &secret,
        delivery.header("webhook-id"),
        delivery.header("webhook-timestamp"),
        delivery.header("webhook-signature"),
        &delivery.body,
        now_secs(),
        300,
    )
    .expect("the signature verifies with the subscription's secret");

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        receiver.received().len(),
        1,
        "the non-project deal fired nothing"
    );
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_and_deletes_fire_the_demo_triggers() {
    let herald = TestHerald::demo(|_| {}).await;
    let receiver = TestReceiver::start().await;
    herald.subscribe("DealWon", &receiver.url("/won")).await;
    herald
        .subscribe("ContactRemoved", &receiver.url("/gone"))
        .await;

    let mut app = herald.app();
    app.execute("UPDATE \"Deal\" SET amount = 1 WHERE id = 1000", &[]);
    app.execute("UPDATE \"Deal\" SET stage = 'won' WHERE id = 1000", &[]);
    // Still won: not a second DealWon.
    app.execute("UPDATE \"Deal\" SET amount = 2 WHERE id = 1000", &[]);
    app.batch(
        "DELETE FROM \"Deal\" WHERE contact_id = 200; DELETE FROM \"Contact\" WHERE id = 200;",
    );

    let got = receiver.wait_for(2, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got_all = receiver.received();
    assert_eq!(got_all.len(), 2, "{got_all:?}");
    let won = got
        .iter()
        .find(|r| r.header("herald-event") == "DealWon")
        .unwrap();
    assert_eq!(won.json()["id"], 1000);
    assert_eq!(won.json()["company"]["name"], "Acme Construction");
    let removed = got
        .iter()
        .find(|r| r.header("herald-event") == "ContactRemoved")
        .unwrap();
    // The contact no longer exists: the payload comes from the change itself.
    assert_eq!(removed.json()["name"], "Jonas Weber");
    assert_eq!(removed.json()["email"], "jonas.weber@borealis.example");
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn perform_list_returns_newest_first_samples_of_the_live_shape() {
    let herald = TestHerald::demo(|_| {}).await;
    let receiver = TestReceiver::start().await;
    herald
        .subscribe("NewOpportunity", &receiver.url("/x"))
        .await;
    herald.app().execute(
        "INSERT INTO \"Deal\" (id, title, is_project, company_id) VALUES (7000, 'Newest', 1, 1)",
        &[],
    );
    let live = receiver.wait_for(1, Duration::from_secs(10)).await[0].json();

    let (status, samples) = herald
        .get("/EPT_WebhookPerformList?event=NewOpportunity")
        .await;
    assert_eq!(status, 200, "{samples}");
    let samples = samples.as_array().unwrap();
    assert_eq!(samples.len(), 2);
    assert_eq!(samples[0]["id"], 7000);
    assert_eq!(samples[1]["id"], 1000);
    let keys = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&samples[0]), keys(&live));
    assert_eq!(samples[0], live);

    let (status, limited) = herald
        .post(
            "/EPT_WebhookPerformList",
            serde_json::json!({"event": "NewOpportunity", "limit": 1}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(limited.as_array().unwrap().len(), 1);
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribing_stops_deliveries() {
    let herald = TestHerald::demo(|_| {}).await;
    let receiver = TestReceiver::start().await;
    let by_body = herald
        .subscribe("NewOpportunity", &receiver.url("/a"))
        .await;
    let by_path = herald
        .subscribe("NewOpportunity", &receiver.url("/b"))
        .await;
    let mut app = herald.app();
    app.execute(
        "INSERT INTO \"Deal\" (title, is_project) VALUES ('one', 1)",
        &[],
    );
    receiver.wait_for(2, Duration::from_secs(10)).await;

    let (status, body) = herald
        .post(
            "/EPT_WebhookUnsubscribe",
            serde_json::json!({"codeWebhookSubscription": by_body["id"]}),
        )
        .await;
    assert_eq!((status, body["deleted"].clone()), (200, true.into()));
    let response = herald
        .client
        .delete(herald.url(&format!(
            "/EPT_WebhookSubscribe/{}",
            by_path["id"].as_str().unwrap()
        )))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    app.execute(
        "INSERT INTO \"Deal\" (title, is_project) VALUES ('two', 1)",
        &[],
    );
    // Give the pipeline ample time to (wrongly) deliver.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(receiver.received().len(), 2);
    herald.stop().await;
}
