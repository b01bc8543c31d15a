//! Database faults: the application holds the write lock longer than herald's busy time-out (herald
//! says it is not ready, keeps what it has, and resumes when the lock is let go); a change-log row
//! that cannot be read (recorded and passed over, never a stop for the changes behind it).

use std::time::Duration;

use serde_json::Value;

use crate::support::*;

async fn readiness(herald: &TestHerald) -> (u16, Value) {
    let r = herald
        .client
        .get(herald.url("/readyz"))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_application_write_lock_makes_herald_not_ready_and_loses_nothing() {
    let herald = TestHerald::demo(|_| {}).await;
    let receiver = TestReceiver::start().await;
    // The first delivery is answered slowly, so that its attempt ends while the lock is held and
    // the worker must wait to record it.
    receiver.queue(Answer {
        delay: Duration::from_millis(1500),
        ..Answer::status(200)
    });
    let subscription = herald
        .subscribe("NewOpportunity", &receiver.url("/hook"))
        .await;
    assert_eq!(readiness(&herald).await.0, 200);

    let app = herald.app();
    app.execute(
        "INSERT INTO Deal (title, is_project, company_id) VALUES ('before the lock', 1, 1)",
        [],
    )
    .unwrap();
    receiver.wait_for(1, Duration::from_secs(10)).await;

    // The application takes the write lock and keeps it past herald's 5 s busy time-out, writing
    // two more deals in that transaction.
    let locker = std::thread::spawn({
        let db = herald.db.clone();
        move || {
            let mut conn = rusqlite::Connection::open(db).unwrap();
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .unwrap();
            for title in ["during the lock 1", "during the lock 2"] {
                tx.execute(
                    "INSERT INTO Deal (title, is_project, company_id) VALUES (?1, 1, 1)",
                    [title],
                )
                .unwrap();
            }
            std::thread::sleep(Duration::from_millis(6500));
            tx.commit().unwrap();
        }
    });

    // Not ready while the lock is held, naming the failing check.
    let body = readiness_becomes(&herald.client, &herald.url(""), 503, Duration::from_secs(4))
        .await
        .expect("herald reports not ready while it cannot write");
    assert_eq!(body["checks"]["writable"], false, "{body}");
    assert_eq!(body["checks"]["database"], true, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("writable"),
        "{body}"
    );

    tokio::task::spawn_blocking(move || locker.join().unwrap())
        .await
        .unwrap();

    // Ready again, and the deals written under the lock are delivered, each once.
    let ready = readiness_becomes(
        &herald.client,
        &herald.url(""),
        200,
        Duration::from_secs(10),
    )
    .await;
    assert!(
        ready.is_some(),
        "herald is ready again once the lock is let go"
    );
    let got = receiver.wait_for(3, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let titles: Vec<String> = receiver
        .received()
        .iter()
        .map(|r| r.json()["title"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(got.len(), 3);
    for title in ["before the lock", "during the lock 1", "during the lock 2"] {
        assert_eq!(
            titles.iter().filter(|t| *t == title).count(),
            1,
            "{title} delivered once: {titles:?}"
        );
    }

    // The attempt that ended under the lock was recorded once it was let go, as delivered.
    let id = subscription["id"].as_str().unwrap();
    let mut log = Value::Null;
    for _ in 0..100 {
        log = herald
            .get(&format!("/api/v1/hooks/{id}/deliveries"))
            .await
            .1;
        if log["deliveries"].as_array().map_or(0, Vec::len) == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let entries = log["deliveries"].as_array().expect("a deliveries log");
    assert_eq!(entries.len(), 3, "{log}");
    assert!(entries.iter().all(|e| e["outcome"] == "success"), "{log}");
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_change_is_recorded_and_the_changes_behind_it_go_on() {
    let herald = TestHerald::demo(|_| {}).await;
    let receiver = TestReceiver::start().await;
    herald
        .subscribe("NewOpportunity", &receiver.url("/hook"))
        .await;
    let app = herald.app();
    // A row written past the triggers (by hand, or by a tool that knows the table but not its
    // layouts), naming a layout that does not exist, then an ordinary change behind it.
    app.execute_batch(
        "INSERT INTO herald_changes (table_name, row_id, action, row_json, layout)
             VALUES ('Deal', 424242, 1, '[424242, \"hand-written\"]', 999999);
         INSERT INTO Deal (title, is_project, company_id) VALUES ('behind the bad row', 1, 1);",
    )
    .unwrap();

    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].json()["title"], "behind the bad row");
    let store = herald.store();
    let failure = eventually(Duration::from_secs(5), || {
        store.recent_script_failures(10).unwrap().into_iter().next()
    })
    .await
    .expect("the unreadable change is recorded");
    assert_eq!(failure.script, "SysNotification_Deal_ParseForEach.rhai");
    assert_eq!(failure.table.as_deref(), Some("Deal"));
    assert_eq!(failure.row_id, Some(424242));
    assert!(failure.change_id.is_some());
    assert!(
        failure.message.contains("layout 999999 is not recorded"),
        "{}",
        failure.message
    );
    herald.stop().await;
}
