//! Hot reload: script files written the way editors write them while herald runs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use herald::database::Database;

use crate::support::*;

const BODY: &str = "GetWebhookResponseBody_NewOpportunity.rhai";

/// A body script for NewOpportunity that says which version it is.
fn versioned_body(version: u32) -> String {
    format!("// version {version}\n#{{ id: row_id, version: {version} }}\n")
}

/// Writes in place, as most editors and `echo >` do.
fn write_in_place(folder: &Path, file: &str, text: &str) {
    std::fs::write(folder.join(file), text).unwrap();
}

/// Writes a temporary file and renames it over the script, as vim, IntelliJ and atomic deploys do.
fn write_then_rename(folder: &Path, file: &str, text: &str) {
    let temp = folder.join(format!(".{file}.swp"));
    std::fs::write(&temp, text).unwrap();
    std::fs::rename(&temp, folder.join(file)).unwrap();
}

/// The entry of `file` in `GET /api/v1/scripts`.
async fn script_entry(herald: &TestHerald, file: &str) -> Option<Value> {
    let (status, body) = herald.get("/api/v1/scripts").await;
    assert_eq!(status, 200, "{body}");
    body["scripts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["file"] == file)
        .cloned()
}

/// Waits until the API says `file` is live with a hash other than `old_hash`; returns the new hash.
async fn wait_for_new_hash(herald: &TestHerald, file: &str, old_hash: &str) -> String {
    for _ in 0..500 {
        if let Some(entry) = script_entry(herald, file).await {
            if entry["status"] == "ok" && entry["hash"] != old_hash {
                return entry["hash"].as_str().unwrap().to_owned();
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{file} was not reloaded within 10 s");
}

async fn live_hash(herald: &TestHerald, file: &str) -> String {
    script_entry(herald, file).await.unwrap()["hash"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn insert_project_deal(herald: &TestHerald, title: &str) -> i64 {
    herald.insert_deal(Deal {
        is_project: true,
        ..Deal::titled(title)
    })
}

/// The script hash each event of `trigger` recorded, by row id.
fn recorded_hashes(db: &Database, trigger: &str) -> BTreeMap<i64, String> {
    AppDb::open(db)
        .rows(
            "SELECT row_id, script_hash FROM herald_events WHERE trigger_name = ?1",
            &[Cell::Text(trigger.into())],
        )
        .iter()
        .map(|r| (r[0].integer(), r[1].text()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn edits_in_place_and_by_rename_take_effect_on_the_next_event() {
    let dir = tempfile::tempdir().unwrap();
    let scripts = demo_scripts(dir.path());
    let herald = TestHerald::start(test_config(dir.path(), &scripts)).await;
    let receiver = TestReceiver::start().await;
    herald
        .subscribe("NewOpportunity", &receiver.url("/hook"))
        .await;
    let original = live_hash(&herald, BODY).await;

    write_in_place(&scripts, BODY, &versioned_body(1));
    let first = wait_for_new_hash(&herald, BODY, &original).await;
    let row = insert_project_deal(&herald, "after an edit in place");
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].json(), serde_json::json!({"id": row, "version": 1}));

    write_then_rename(&scripts, BODY, &versioned_body(2));
    let second = wait_for_new_hash(&herald, BODY, &first).await;
    let row2 = insert_project_deal(&herald, "after a rename");
    let got = receiver.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(got[1].json(), serde_json::json!({"id": row2, "version": 2}));

    let hashes = recorded_hashes(&herald.db, "NewOpportunity");
    assert_eq!(hashes[&row], first);
    assert_eq!(hashes[&row2], second);
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_edit_keeps_the_working_version_and_reports_where_it_broke() {
    let dir = tempfile::tempdir().unwrap();
    let scripts = demo_scripts(dir.path());
    let herald = TestHerald::start(test_config(dir.path(), &scripts)).await;
    let receiver = TestReceiver::start().await;
    herald
        .subscribe("NewOpportunity", &receiver.url("/hook"))
        .await;
    let working = live_hash(&herald, BODY).await;

    write_then_rename(&scripts, BODY, "// broken\nlet deal = ;\n#{ id: row_id }\n");
    let mut reported = None;
    for _ in 0..500 {
        let entry = script_entry(&herald, BODY).await.unwrap();
        if entry["status"] == "error" {
            reported = Some(entry);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let entry = reported.expect("the broken edit is reported within 10 s");
    assert_eq!(
        entry["hash"],
        working.as_str(),
        "the old version stays live"
    );
    let error = &entry["error"];
    assert_eq!(error["line"], 2, "{entry}");
    assert_eq!(error["column"], 12, "{entry}");
    assert_eq!(error["source_line"], "let deal = ;");
    assert!(
        error["text"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{BODY}:2:12: ")),
        "{entry}"
    );
    assert!(
        error["text"]
            .as_str()
            .unwrap()
            .ends_with("\n               ^"),
        "{entry}"
    );

    let row = insert_project_deal(&herald, "still the old payload");
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    let payload = got[0].json();
    assert_eq!(payload["id"], row);
    assert_eq!(payload["title"], "still the old payload");
    assert_eq!(recorded_hashes(&herald.db, "NewOpportunity")[&row], working);

    write_in_place(&scripts, BODY, &versioned_body(3));
    wait_for_new_hash(&herald, BODY, &working).await;
    let entry = script_entry(&herald, BODY).await.unwrap();
    assert_eq!(entry["error"], Value::Null);
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn removing_a_body_script_removes_its_trigger_and_keeps_its_subscriptions() {
    let dir = tempfile::tempdir().unwrap();
    let scripts = demo_scripts(dir.path());
    let herald = TestHerald::start(test_config(dir.path(), &scripts)).await;
    let receiver = TestReceiver::start().await;
    let subscription = herald.subscribe("DealWon", &receiver.url("/won")).await;

    std::fs::remove_file(scripts.join("GetWebhookResponseBody_DealWon.rhai")).unwrap();
    let mut listing = Value::Null;
    for _ in 0..500 {
        let (_, body) = herald.get("/api/v1/scripts").await;
        if !body["triggers"]
            .as_array()
            .unwrap()
            .contains(&"DealWon".into())
        {
            listing = body;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_ne!(
        listing,
        Value::Null,
        "DealWon is still a trigger after 10 s"
    );
    assert_eq!(
        listing["missing_triggers"],
        serde_json::json!([{"trigger": "DealWon", "hooks": 1}])
    );
    let (status, body) = herald
        .post(
            "/EPT_WebhookSubscribe",
            serde_json::json!({"event": "DealWon", "target_url": receiver.url("/again")}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("unknown_trigger"))
    );
    let (status, _) = herald.get("/EPT_WebhookPerformList?event=DealWon").await;
    assert_eq!(status, 404);
    let store = herald.store();
    let hook = store
        .get_hook(subscription["id"].as_str().unwrap())
        .unwrap()
        .expect("the subscription is kept");
    assert_eq!(hook.events, vec!["DealWon".to_owned()]);
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_notification_script_starts_tracking_its_table() {
    let dir = tempfile::tempdir().unwrap();
    let scripts = demo_scripts(dir.path());
    let herald = TestHerald::start(test_config(dir.path(), &scripts)).await;
    let receiver = TestReceiver::start().await;

    write_in_place(
        &scripts,
        "GetWebhookResponseBody_CompanyAdded.rhai",
        "if sample { [] } else { db_query_one(\"SELECT id, name FROM \\\"Company\\\" WHERE id = ?\", [row_id]) }\n",
    );
    write_then_rename(
        &scripts,
        "SysNotification_Company_ParseForEach.rhai",
        "if action_key == \"insert\" { trigger_webhook_event(\"CompanyAdded\", row_id); }\n",
    );
    let mut tracked = false;
    for _ in 0..500 {
        let (_, body) = herald.get("/api/v1/scripts").await;
        if body["tracked_tables"]
            .as_array()
            .unwrap()
            .contains(&"Company".into())
        {
            tracked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        tracked,
        "Company is not tracked 10 s after its script appeared"
    );
    // The scripts take effect before the table's trigger is made: wait for the trigger too.
    let mut app = herald.app();
    let trigger_query = if app.is_postgres() {
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = '\"Company\"'::regclass AND NOT tgisinternal"
    } else {
        "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'Company'"
    };
    eventually(Duration::from_secs(20), || {
        (app.integer(trigger_query, &[]) > 0).then_some(())
    })
    .await
    .expect("Company's tracking trigger is made");
    herald
        .subscribe("CompanyAdded", &receiver.url("/company"))
        .await;
    let id = herald.app().insert(
        "INSERT INTO \"Company\" (name, city) VALUES ('Nordbau', 'Kiel')",
        &[],
    );
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(
        got[0].json(),
        serde_json::json!({"id": id, "name": "Nordbau"})
    );
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn events_fired_during_ten_rewrites_are_each_delivered_once_with_one_version() {
    let dir = tempfile::tempdir().unwrap();
    let scripts = demo_scripts(dir.path());
    write_in_place(&scripts, BODY, &versioned_body(0));
    let herald = TestHerald::start(test_config(dir.path(), &scripts)).await;
    let receiver = TestReceiver::start().await;
    herald
        .subscribe("NewOpportunity", &receiver.url("/hook"))
        .await;

    let db = herald.db.clone();
    let folder = scripts.clone();
    let writer = tokio::task::spawn_blocking(move || {
        let mut app = AppDb::open(&db);
        let mut ids = Vec::new();
        for i in 0..200u32 {
            ids.push(app.insert(
                "INSERT INTO \"Deal\" (title, is_project) VALUES (?1, 1)",
                &[Cell::Text(format!("deal {i}"))],
            ));
            if i % 20 == 10 {
                let version = i / 20 + 1;
                if version % 2 == 0 {
                    write_in_place(&folder, BODY, &versioned_body(version));
                } else {
                    write_then_rename(&folder, BODY, &versioned_body(version));
                }
            }
            std::thread::sleep(Duration::from_millis(8));
        }
        ids
    });
    let ids = writer.await.unwrap();
    let got = receiver.wait_for(200, Duration::from_secs(60)).await;
    // Nothing more arrives: no event was fired twice.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got_all = receiver.received();
    assert_eq!(
        got_all.len(),
        200,
        "{} deliveries for 200 events",
        got_all.len()
    );

    let mut version_of: BTreeMap<i64, i64> = BTreeMap::new();
    for delivery in &got {
        let payload = delivery.json();
        let id = payload["id"].as_i64().unwrap();
        let version = payload["version"].as_i64().unwrap();
        assert!(
            version_of.insert(id, version).is_none(),
            "row {id} delivered twice"
        );
    }
    assert_eq!(version_of.keys().copied().collect::<Vec<_>>(), ids);

    // Each event records exactly one version, and one version has one hash.
    let hashes = recorded_hashes(&herald.db, "NewOpportunity");
    let mut hash_of_version: BTreeMap<i64, BTreeSet<&str>> = BTreeMap::new();
    for (id, version) in &version_of {
        hash_of_version
            .entry(*version)
            .or_default()
            .insert(hashes[id].as_str());
    }
    for (version, hashes) in &hash_of_version {
        assert_eq!(hashes.len(), 1, "version {version} recorded as {hashes:?}");
    }
    let distinct: BTreeSet<_> = hash_of_version.values().flatten().collect();
    assert_eq!(distinct.len(), hash_of_version.len());
    // Versions only move forward in commit order, and the rewrites were seen mid-stream.
    let versions: Vec<i64> = version_of.values().copied().collect();
    assert!(versions.windows(2).all(|w| w[0] <= w[1]), "{versions:?}");
    assert!(
        hash_of_version.len() >= 3,
        "only versions {:?} seen",
        hash_of_version.keys()
    );
    herald.stop().await;
}
