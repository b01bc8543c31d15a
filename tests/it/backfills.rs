//! Backfills (#22): existing rows rendered by a trigger's body script and queued for one hook, in
//! order, in steps, resuming after a SIGKILL.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;

use crate::crash::{free_addr, herald_command, kill9, wait_ready};
use crate::support::*;

/// `count` projects titled `Old n` (n from 1), written in one statement before any hook exists.
fn old_deals(herald_db: &herald::database::Database, count: usize) {
    let mut app = AppDb::open(herald_db);
    app.execute(
        &format!(
            "INSERT INTO \"Deal\" (title, amount, is_project, company_id, project_id)
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count})
             SELECT 'Old ' || i, 1000, 1, 1, 10 FROM n"
        ),
        &[],
    );
}

/// Waits until herald has consumed every change written so far (the old deals are history, not
/// live events, for hooks made after this).
async fn changes_consumed(base: &str) {
    let client = reqwest::Client::new();
    for _ in 0..2400 {
        let metrics = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics.lines().any(|l| l == "herald_changes_waiting 0") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the change log was not consumed");
}

const OLD_DEALS: &str = "SELECT id FROM \"Deal\" WHERE title LIKE 'Old %' ORDER BY id";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_of_10000_rows_delivers_each_once_in_order_to_that_hook_only() {
    let herald = TestHerald::demo(|_| {}).await;
    old_deals(&herald.db, 10_000);
    changes_consumed(&herald.url("")).await;
    let receiver = TestReceiver::start().await;
    let new_one = herald
        .subscribe("NewOpportunity", &receiver.url("/new-integration"))
        .await;
    let new_id = new_one["id"].as_str().unwrap().to_owned();
    herald
        .subscribe("NewOpportunity", &receiver.url("/live-only"))
        .await;

    let (status, backfill) = herald
        .post(
            &format!("/api/v1/hooks/{new_id}/backfill"),
            json!({"event": "NewOpportunity", "query": OLD_DEALS}),
        )
        .await;
    assert_eq!(status, 202, "{backfill}");
    assert_eq!(backfill["rows"], 10_000);
    let backfill_id = backfill["id"].as_str().unwrap().to_owned();

    // A live event while the backfill runs reaches the other hook without waiting for it.
    receiver.wait_for(50, Duration::from_secs(30)).await;
    herald.insert_deal(Deal {
        amount: Some(5.0),
        is_project: true,
        company_id: Some(1),
        ..Deal::titled("Live during the backfill")
    });
    let mut live_seen_with = None;
    for _ in 0..400 {
        let got = receiver.received();
        if got.iter().any(|r| r.path == "/live-only") {
            live_seen_with = Some(got.iter().filter(|r| r.path == "/new-integration").count());
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let backfilled_then = live_seen_with.expect("the live event reached the other hook");
    assert!(
        backfilled_then < 10_000,
        "the live event waited for the whole backfill"
    );

    let mut progress = json!(null);
    for _ in 0..1200 {
        progress = herald
            .get(&format!("/api/v1/hooks/{new_id}/backfills/{backfill_id}"))
            .await
            .1;
        if progress["status"] == "done" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(progress["status"], "done", "{progress}");
    assert_eq!(progress["queued"], 10_000);
    assert_eq!(progress["failed"], 0);

    let got = receiver.wait_for(10_002, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = if receiver.received().len() > got.len() {
        receiver.received()
    } else {
        got
    };
    // Queued in the order of the query: their webhook-ids (time-ordered) follow the row ids. They
    // arrive in that order as far as the hook's attempts in flight at once allow (see the next
    // test for one at a time).
    let mut backfilled: Vec<(String, i64)> = got
        .iter()
        .filter(|r| r.path == "/new-integration")
        .map(|r| (r.header("webhook-id").to_owned(), r.json()))
        .filter(|(_, p)| p["title"].as_str().unwrap().starts_with("Old "))
        .map(|(id, p)| (id, p["id"].as_i64().unwrap()))
        .collect();
    assert_eq!(backfilled.len(), 10_000, "each once");
    backfilled.sort();
    assert!(
        backfilled.windows(2).all(|w| w[0].1 < w[1].1),
        "queued in the order of the query"
    );
    let live_only: Vec<String> = got
        .iter()
        .filter(|r| r.path == "/live-only")
        .map(|r| r.json()["title"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(live_only, ["Live during the backfill"], "that hook only");

    // Marked in the log.
    let (_, log) = herald
        .get(&format!("/api/v1/hooks/{new_id}/deliveries?limit=5"))
        .await;
    assert!(log["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["backfill_id"] == backfill_id.as_str()));
    receiver.stop();
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn to_a_hook_that_takes_one_at_a_time_a_backfill_arrives_in_the_order_given() {
    let herald = TestHerald::demo(|config| {
        config.delivery.max_in_flight_per_hook = 1;
    })
    .await;
    old_deals(&herald.db, 1_000);
    changes_consumed(&herald.url("")).await;
    let receiver = TestReceiver::start().await;
    let hook = herald
        .subscribe("NewOpportunity", &receiver.url("/one-by-one"))
        .await;
    let id = hook["id"].as_str().unwrap();
    // Given newest first: that is the order they arrive in.
    let newest_first = format!("{} DESC", OLD_DEALS);
    let (status, backfill) = herald
        .post(
            &format!("/api/v1/hooks/{id}/backfill"),
            json!({"event": "NewOpportunity", "query": newest_first}),
        )
        .await;
    assert_eq!(status, 202, "{backfill}");
    let got = receiver.wait_for(1_000, Duration::from_secs(120)).await;
    let ids: Vec<i64> = got
        .iter()
        .map(|r| r.json()["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 1_000);
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "in the order given");
    receiver.stop();
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_says_what_is_wrong_with_it_and_starts_nothing() {
    let herald = TestHerald::demo(|_| {}).await;
    let hook = herald
        .create_hook(
            json!({"target_url": "http://127.0.0.1:9/x", "company_id": 1,
                            "events": ["NewOpportunity", "Deal.create", "Deal.delete"]}),
        )
        .await;
    let id = hook["id"].as_str().unwrap();
    let path = format!("/api/v1/hooks/{id}/backfill");
    for (body, says) in [
        (json!({"event": "NewOpportunity"}), "query or row_ids"),
        (
            json!({"event": "DealWon", "row_ids": [1000]}),
            "does not select",
        ),
        (
            json!({"event": "Deal.delete", "row_ids": [1000]}),
            "deleted",
        ),
        (
            json!({"event": "NoSuchTrigger", "row_ids": [1]}),
            "unknown trigger",
        ),
        (
            json!({"event": "NewOpportunity", "query": "DELETE FROM \"Deal\""}),
            "query failed",
        ),
        (
            json!({"event": "NewOpportunity", "query": "SELECT title FROM \"Deal\""}),
            "first column",
        ),
        (
            json!({"event": "NewOpportunity", "query": "SELECT id FROM \"Deal\" WHERE 0 = 1"}),
            "empty",
        ),
    ] {
        let (status, error) = herald.post(&path, body.clone()).await;
        assert_error(status, &error, 422, "invalid_backfill");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {message}");
    }
    let (_, list) = herald.get(&format!("/api/v1/hooks/{id}/backfills")).await;
    assert_eq!(list["backfills"].as_array().unwrap().len(), 0);
    let deals = AppDb::open(&herald.db).rows("SELECT count(*) FROM \"Deal\"", &[])[0][0].integer();
    assert_eq!(deals, 2, "the DELETE did not run");
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_resumes_after_a_sigkill_and_queues_each_row_once() {
    let dir = tempfile::tempdir().unwrap();
    let scripts = demo_scripts(dir.path());
    let db = test_database(dir.path());
    let receiver = TestReceiver::start().await;
    // A slow endpoint, so that the kill lands mid-backfill.
    receiver.answer_always(Answer {
        delay: Duration::from_millis(2),
        ..Answer::status(200)
    });
    let client = reqwest::Client::new();
    let mut addr = free_addr();
    let mut herald = herald_command(&db, dir.path(), &scripts, addr, None)
        .spawn()
        .unwrap();
    wait_ready(&client, addr).await;
    old_deals(&db, 3_000);
    changes_consumed(&format!("http://{addr}")).await;
    let subscribed: serde_json::Value = client
        .post(format!("http://{addr}/EPT_WebhookSubscribe"))
        .bearer_auth(TOKEN)
        .json(&json!({"event": "NewOpportunity", "target_url": receiver.url("/b")}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let hook_id = subscribed["id"].as_str().unwrap().to_owned();
    let started: serde_json::Value = client
        .post(format!("http://{addr}/api/v1/hooks/{hook_id}/backfill"))
        .bearer_auth(TOKEN)
        .json(&json!({"event": "NewOpportunity", "query": OLD_DEALS}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let backfill_id = started["id"].as_str().unwrap().to_owned();
    receiver.wait_for(300, Duration::from_secs(30)).await;
    kill9(&mut herald);
    let before_restart = receiver.received().len();
    assert!(before_restart < 3_000, "killed mid-backfill");

    addr = free_addr();
    let mut herald = herald_command(&db, dir.path(), &scripts, addr, None)
        .spawn()
        .unwrap();
    wait_ready(&client, addr).await;
    let mut progress = json!(null);
    for _ in 0..600 {
        progress = client
            .get(format!(
                "http://{addr}/api/v1/hooks/{hook_id}/backfills/{backfill_id}"
            ))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if progress["status"] == "done" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        progress["status"], "done",
        "resumed and finished: {progress}"
    );
    assert_eq!(progress["queued"], 3_000);
    // Every row arrives; a row sent twice is only an attempt the kill cut short (at least once),
    // so what counts is the rows seen, not the requests.
    let mut ids: HashSet<i64> = HashSet::new();
    for _ in 0..600 {
        ids = receiver
            .received()
            .iter()
            .map(|r| r.json()["id"].as_i64().unwrap())
            .collect();
        if ids.len() == 3_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ids.len(), 3_000);
    // Queued once: the hook has exactly one event per row.
    let summary: serde_json::Value = client
        .get(format!("http://{addr}/api/v1/hooks/{hook_id}/summary"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = summary["delivered"].as_u64().unwrap()
        + summary["pending"].as_u64().unwrap()
        + summary["failed"].as_u64().unwrap()
        + summary["discarded"].as_u64().unwrap();
    assert_eq!(events, 3_000, "{summary}");
    kill9(&mut herald);
    receiver.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_backfill_queues_no_more_rows() {
    let herald = TestHerald::demo(|_| {}).await;
    old_deals(&herald.db, 5_000);
    changes_consumed(&herald.url("")).await;
    let receiver = TestReceiver::start().await;
    // A slow endpoint: the backfill waits for it to drain before it queues more.
    receiver.answer_always(Answer {
        delay: Duration::from_millis(50),
        ..Answer::status(200)
    });
    let hook = herald
        .subscribe("NewOpportunity", &receiver.url("/slow"))
        .await;
    let id = hook["id"].as_str().unwrap();
    let (_, backfill) = herald
        .post(
            &format!("/api/v1/hooks/{id}/backfill"),
            json!({"event": "NewOpportunity", "query": OLD_DEALS}),
        )
        .await;
    let path = format!(
        "/api/v1/hooks/{id}/backfills/{}",
        backfill["id"].as_str().unwrap()
    );
    receiver.wait_for(10, Duration::from_secs(30)).await;
    let (status, cancelled) = herald.post(&format!("{path}/cancel"), json!({})).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    let done = cancelled["done"].as_u64().unwrap();
    assert!(done < 5_000, "{cancelled}");
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let (_, later) = herald.get(&path).await;
    assert_eq!(later["done"], done, "nothing more was queued: {later}");
    let (status, again) = herald.post(&format!("{path}/cancel"), json!({})).await;
    assert_error(status, &again, 409, "backfill_ended");

    // From the hook page: its Cancel button, and the banner under Backfill.
    use crate::admin_pages::{csrf_of, page, post_form, session_cookie};
    let (_, second) = herald
        .post(
            &format!("/api/v1/hooks/{id}/backfill"),
            json!({"event": "NewOpportunity", "query": OLD_DEALS}),
        )
        .await;
    let second_id = second["id"].as_str().unwrap();
    let cookie = session_cookie(&herald).await;
    let hook_page = format!("/admin/hooks/{id}");
    let (_, shown) = page(&herald, &cookie, &hook_page).await;
    let cancel = format!("{hook_page}/backfills/{second_id}/cancel");
    assert!(
        shown.contains(&cancel),
        "a Cancel button for the running one"
    );
    let response = post_form(&herald, &cookie, &csrf_of(&shown), &cancel, &[]).await;
    assert_eq!(response.status(), 303);
    let (_, after) = page(&herald, &cookie, &hook_page).await;
    assert!(
        after.contains("Backfill cancelled after"),
        "the banner says so"
    );
    assert!(!after.contains(&cancel), "no Cancel button once it ended");
    receiver.stop();
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_event_backfill_sends_each_row_as_it_is_now_as_that_event() {
    let herald = TestHerald::demo(|_| {}).await;
    old_deals(&herald.db, 30);
    changes_consumed(&herald.url("")).await;
    // One of them changed since it was created: the backfill sends it as it is now.
    AppDb::open(&herald.db).execute(
        "UPDATE \"Deal\" SET amount = 5000 WHERE title = 'Old 7'",
        &[],
    );
    changes_consumed(&herald.url("")).await;
    let receiver = TestReceiver::start().await;
    let hook = herald
        .create_hook(
            json!({"target_url": receiver.url("/deals"), "company_id": 1,
                            "events": ["Deal.create"]}),
        )
        .await;
    let id = hook["id"].as_str().unwrap();
    let gone = 999_999;
    let (status, backfill) = herald
        .post(
            &format!("/api/v1/hooks/{id}/backfill"),
            json!({"event": "Deal.create", "query": OLD_DEALS}),
        )
        .await;
    assert_eq!(status, 202, "{backfill}");
    assert_eq!(backfill["rows"], 30);
    let got = receiver.wait_for(30, Duration::from_secs(30)).await;
    // Queued in the query's order: their (time-ordered) webhook-ids follow the row ids.
    let mut queued: Vec<(String, serde_json::Value)> = got
        .iter()
        .map(|r| (r.header("webhook-id").to_owned(), r.json()))
        .collect();
    queued.sort_by(|a, b| a.0.cmp(&b.0));
    let payloads: Vec<serde_json::Value> = queued.into_iter().map(|(_, p)| p).collect();
    let ids: Vec<i64> = payloads
        .iter()
        .map(|p| p["resource_id"].as_i64().unwrap())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "queued in the query's order: {ids:?}"
    );
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        30,
        "each row once"
    );
    for payload in &payloads {
        assert_eq!(payload["resource_name"], "Deal");
        assert_eq!(payload["event_type"], "create");
        assert_eq!(payload["company_id"], 1);
        assert_eq!(payload["row"]["id"], payload["resource_id"]);
        assert!(payload["row"]["title"]
            .as_str()
            .unwrap()
            .starts_with("Old "));
        assert!(payload["old_row"].is_null(), "{payload}");
        assert!(payload["id"].as_str().unwrap().starts_with("evt_"));
    }
    let changed = payloads
        .iter()
        .find(|p| p["row"]["title"] == "Old 7")
        .unwrap();
    assert_eq!(changed["row"]["amount"].as_f64(), Some(5000.0));

    // A row that no longer exists is counted as failed, with why.
    let (status, second) = herald
        .post(
            &format!("/api/v1/hooks/{id}/backfill"),
            json!({"event": "Deal.create", "row_ids": [ids[0], gone]}),
        )
        .await;
    assert_eq!(status, 202, "{second}");
    let second_id = second["id"].as_str().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let done = loop {
        let (_, b) = herald
            .get(&format!("/api/v1/hooks/{id}/backfills/{second_id}"))
            .await;
        if b["status"] == "done" {
            break b;
        }
        assert!(tokio::time::Instant::now() < deadline, "{b}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(done["done"], 2);
    assert_eq!(done["failed"], 1, "{done}");
    receiver.wait_for(31, Duration::from_secs(10)).await;
    receiver.stop();
    herald.stop().await;
}
