//! Scripts that fail: each costs its own event, recorded with file, line and column; the rest goes on.

use std::path::Path;
use std::time::Duration;

use crate::support::*;

/// The demo folder plus a trigger `Hostile` whose body script is `body`, fired for every Deal whose
/// title is 'hostile'.
pub(crate) fn scripts_with_hostile_body(dir: &Path, body: &str) -> std::path::PathBuf {
    let scripts = demo_scripts(dir);
    std::fs::write(scripts.join("GetWebhookResponseBody_Hostile.rhai"), body).unwrap();
    let notification =
        std::fs::read_to_string(scripts.join("SysNotification_Deal_ParseForEach.rhai")).unwrap();
    std::fs::write(
        scripts.join("SysNotification_Deal_ParseForEach.rhai"),
        format!("{notification}\nif action == \"1\" && row.title == \"hostile\" {{\n    trigger_webhook_event(\"Hostile\", row_id);\n}}\n"),
    )
    .unwrap();
    scripts
}

async fn hostile_event_fails_and_others_go_on(
    body: &str,
    expected_message: &str,
    expected_line: u32,
) {
    hostile_event_fails_with(body, expected_message, expected_line, |_| {}).await
}

pub(crate) async fn hostile_event_fails_with(
    body: &str,
    expected_message: &str,
    expected_line: u32,
    tweak: impl FnOnce(&mut herald::Config),
) {
    let dir = tempfile::tempdir().unwrap();
    let scripts = scripts_with_hostile_body(dir.path(), body);
    let mut config = test_config(dir.path(), &scripts);
    config.sandbox.time_budget = Duration::from_secs(1);
    tweak(&mut config);
    let herald = TestHerald::start(config).await;
    let receiver = TestReceiver::start().await;
    herald.subscribe("Hostile", &receiver.url("/hostile")).await;
    herald
        .subscribe("NewOpportunity", &receiver.url("/fine"))
        .await;

    let mut app = herald.app();
    app.execute(
        "INSERT INTO \"Deal\" (title, is_project) VALUES ('hostile', 0)",
        &[],
    );
    app.execute(
        "INSERT INTO \"Deal\" (title, is_project) VALUES ('after', 1)",
        &[],
    );

    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].json()["title"], "after");
    let store = herald.store();
    let failure = eventually(Duration::from_secs(5), || {
        store.recent_script_failures(10).unwrap().into_iter().next()
    })
    .await
    .expect("the failure is recorded");
    assert_eq!(failure.script, "GetWebhookResponseBody_Hostile.rhai");
    assert_eq!(failure.trigger.as_deref(), Some("Hostile"));
    assert_eq!(failure.line, Some(expected_line), "{failure:?}");
    assert!(failure.col.is_some());
    assert!(
        failure.message.contains(expected_message),
        "{} does not mention {expected_message}",
        failure.message
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        receiver.received().len(),
        1,
        "the hostile event was not delivered"
    );
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_loop_fails_its_event_within_the_time_budget() {
    // No operation limit: only the wall-clock budget can stop it.
    hostile_event_fails_with(
        "let n = 0;\nloop {\n    n += 1;\n}\n",
        "time budget of 1000 ms",
        3,
        |config| config.sandbox.max_operations = 0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_loop_breaks_the_operation_limit() {
    hostile_event_fails_with(
        "let n = 0;\nloop {\n    n += 1;\n}\n",
        "too many operations",
        3,
        |config| {
            config.sandbox.max_operations = 100_000;
            config.sandbox.time_budget = Duration::from_secs(30);
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_string_breaks_the_size_limit() {
    hostile_event_fails_and_others_go_on(
        "let s = \"x\";\nloop {\n    s += s;\n}\n",
        "Length of string too large",
        3,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_db_query_fails_its_event() {
    hostile_event_fails_and_others_go_on(
        "// tries to write\nlet rows = db_query(\"DELETE FROM \\\"Deal\\\"\", []);\n#{ n: rows.len() }\n",
        if on_postgres() {
            "db_query: only reads are allowed: this statement would change the database"
        } else {
            "db_query: not authorized: scripts may only read"
        },
        2,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misspelt_column_names_the_function_and_the_column() {
    hostile_event_fails_and_others_go_on(
        "\nlet deal = db_query_one(\"SELECT titel FROM \\\"Deal\\\" WHERE id = ?\", [row_id]);\n#{ title: deal.titel }\n",
        if on_postgres() {
            "db_query_one: column \"titel\" does not exist"
        } else {
            "db_query_one: no such column: titel"
        },
        2,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_recursion_fails_its_event() {
    hostile_event_fails_and_others_go_on(
        "fn down(n) {\n    down(n + 1)\n}\ndown(0)\n",
        "call stack too deep",
        4,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_over_the_size_cap_fails_its_event() {
    hostile_event_fails_with(
        "// 40 KiB of notes\nlet notes = \"\";\nfor i in 0..4096 { notes += \"xxxxxxxxxx\"; }\n#{ notes: notes }\n",
        "over the cap of 32768 bytes (sandbox.max_payload_bytes)",
        4,
        |config| config.sandbox.max_payload_bytes = 32 * 1024,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleep_is_not_a_function_scripts_have() {
    // It blocked the tracker thread for its whole length, past the time budget: the next change
    // waited 20 s, nothing was recorded, and readiness said all was well.
    hostile_event_fails_and_others_go_on(
        "// waits\nsleep(20);\n#{ slept: true }\n",
        "Function not found: sleep",
        2,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn perform_list_with_a_sleeping_body_script_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let scripts = scripts_with_hostile_body(dir.path(), "sleep(30.0);\n[#{ slept: true }]\n");
    let herald = TestHerald::start(test_config(dir.path(), &scripts)).await;
    let (status, body) = tokio::time::timeout(
        Duration::from_secs(10),
        herald.get("/EPT_WebhookPerformList?event=Hostile"),
    )
    .await
    .expect("perform-list answers without waiting out the script's sleep");
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"]["code"], "script_failed", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("Function not found: sleep"), "{message}");
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_that_runs_past_the_budget_fails_its_event() {
    // A query that would run for seconds: PostgreSQL's pg_sleep, SQLite's endless recursion.
    let query = if on_postgres() {
        "SELECT pg_sleep(5)"
    } else {
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT count(*) FROM n"
    };
    hostile_event_fails_with(
        &format!(
            "// waits for the database\nlet rows = db_query(\"{query}\");\n#{{ rows: rows }}\n"
        ),
        "time budget",
        2,
        |_| {},
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_that_fires_past_the_cap_fails_and_others_go_on() {
    // One run of a notification script fired 5,000 events, each rendered and fanned out.
    let dir = tempfile::tempdir().unwrap();
    let scripts = demo_scripts(dir.path());
    let notification =
        std::fs::read_to_string(scripts.join("SysNotification_Deal_ParseForEach.rhai")).unwrap();
    std::fs::write(
        scripts.join("SysNotification_Deal_ParseForEach.rhai"),
        format!(
            "{notification}\nif action == \"1\" && row.title == \"flood\" {{\n    for i in 0..5000 {{\n        trigger_webhook_event(\"NewOpportunity\", row_id);\n    }}\n}}\n"
        ),
    )
    .unwrap();
    let mut config = test_config(dir.path(), &scripts);
    config.sandbox.max_events_per_change = 20;
    let herald = TestHerald::start(config).await;
    let receiver = TestReceiver::start().await;
    herald
        .subscribe("NewOpportunity", &receiver.url("/opportunities"))
        .await;
    let mut app = herald.app();
    app.execute(
        "INSERT INTO \"Deal\" (title, is_project) VALUES ('flood', 1)",
        &[],
    );
    app.execute(
        "INSERT INTO \"Deal\" (title, is_project) VALUES ('after', 1)",
        &[],
    );
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].json()["title"], "after");
    let store = herald.store();
    let failure = eventually(Duration::from_secs(5), || {
        store.recent_script_failures(10).unwrap().into_iter().next()
    })
    .await
    .expect("the failure is recorded");
    assert_eq!(failure.script, "SysNotification_Deal_ParseForEach.rhai");
    assert!(
        failure
            .message
            .contains("20 events, the most one change may fire (sandbox.max_events_per_change)"),
        "{}",
        failure.message
    );
    assert!(failure.line.is_some(), "{failure:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        receiver.received().len(),
        1,
        "none of the flood's events was stored"
    );
    herald.stop().await;
}
