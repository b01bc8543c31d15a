//! The binary's commands: `herald check`, `herald fire --dry-run` and `herald sample`.

use std::process::Command;

use herald::database::Database;

use crate::support::{demo_scripts, test_database, AppDb};

/// The binary in `dir`, on `dir/herald.db` (its default there) or on the test PostgreSQL server.
fn herald(args: &[&str], dir: &std::path::Path, db: &Database) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(args)
        .env("HERALD_DB", db.as_argument())
        .env_remove("HERALD_SCRIPTS")
        .env_remove("HERALD_CONFIG")
        .env("RUST_LOG", "warn")
        .current_dir(dir)
        .output()
        .unwrap()
}

#[test]
fn check_passes_on_the_demo_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let db = test_database(dir.path());
    demo_scripts(dir.path());
    let output = herald(&["check"], dir.path(), &db);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("3 body scripts, 2 notification scripts"),
        "{stdout}"
    );
}

#[test]
fn check_reports_a_syntax_error_with_file_line_and_column_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let db = test_database(dir.path());
    let scripts = demo_scripts(dir.path());
    std::fs::write(
        scripts.join("GetWebhookResponseBody_Broken.rhai"),
        "// a comment\nlet deal = db_query_one(\"SELECT 1\");\nlet x = ;\n",
    )
    .unwrap();
    std::fs::write(
        scripts.join("SysNotification_Invoice_ParseForEach.rhai"),
        "// tracks a table that does not exist\n",
    )
    .unwrap();
    let output = herald(&["check"], dir.path(), &db);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("GetWebhookResponseBody_Broken.rhai:3:9: ")),
        "{stdout}"
    );
    assert!(
        stdout.contains("GetWebhookResponseBody_Broken.rhai:3:9: Unexpected ';'\n    let x = ;\n            ^\n"),
        "the offending line and a caret: {stdout}"
    );
    assert!(
        stdout.contains("SysNotification_Invoice_ParseForEach.rhai: table Invoice does not exist"),
        "{stdout}"
    );
}

#[test]
fn fire_dry_run_prints_the_payload_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = test_database(dir.path());
    demo_scripts(dir.path());
    let output = herald(
        &["fire", "NewOpportunity", "1000", "--dry-run"],
        dir.path(),
        &db,
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let payload: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(payload["id"], 1000);
    assert_eq!(payload["title"], "Facade renovation");
    let events = AppDb::open(&db).integer("SELECT count(*) FROM herald_events", &[]);
    assert_eq!(events, 0);

    let output = herald(
        &["fire", "NoSuchTrigger", "1", "--dry-run"],
        dir.path(),
        &db,
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown trigger 'NoSuchTrigger'"));
}

#[test]
fn sample_prints_what_perform_list_returns_and_fails_with_the_diagnostic() {
    let dir = tempfile::tempdir().unwrap();
    let db = test_database(dir.path());
    let scripts = demo_scripts(dir.path());
    let sample = |args: &[&str]| {
        let output = herald(args, dir.path(), &db);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
    };
    let samples = sample(&["sample", "NewOpportunity"]);
    assert_eq!(samples.as_array().unwrap().len(), 1, "{samples}");
    assert_eq!(samples[0]["id"], 1000);
    assert_eq!(samples[0]["title"], "Facade renovation");

    AppDb::open(&db).execute(
        "INSERT INTO \"Deal\" (id, title, is_project) VALUES (5000, 'Newest', 1)",
        &[],
    );
    let samples = sample(&["sample", "NewOpportunity", "--limit", "1"]);
    assert_eq!(samples.as_array().unwrap().len(), 1, "{samples}");
    assert_eq!(samples[0]["id"], 5000);

    std::fs::write(
        scripts.join("GetWebhookResponseBody_NewOpportunity.rhai"),
        "// reads a column that does not exist\ndb_query(\"SELECT titel FROM \\\"Deal\\\"\", [])\n",
    )
    .unwrap();
    let output = herald(&["sample", "NewOpportunity"], dir.path(), &db);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let missing_column = if db.sqlite_path().is_some() {
        "no such column: titel"
    } else {
        "column \"titel\" does not exist"
    };
    assert!(
        stderr.contains(&format!(
            "GetWebhookResponseBody_NewOpportunity.rhai:2:1: db_query: {missing_column}"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("\n    db_query(\"SELECT titel FROM \\\"Deal\\\"\", [])\n    ^"),
        "{stderr}"
    );
}

#[test]
fn logs_are_json_lines_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    demo_scripts(dir.path());
    let db = test_database(dir.path());
    let output = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["fire", "NewOpportunity", "1000", "--dry-run"])
        .env("HERALD_DB", db.as_argument())
        .env_remove("HERALD_SCRIPTS")
        .env_remove("HERALD_CONFIG")
        .env("RUST_LOG", "info")
        .env("HERALD_LOG_FORMAT", "json")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let migration = lines
        .iter()
        .find(|l| l["message"] == "applied herald migration")
        .unwrap_or_else(|| panic!("{stderr}"));
    assert_eq!(migration["level"], "INFO");
    assert_eq!(migration["version"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_queues_rows_for_a_running_herald_and_follows_them_to_the_end() {
    use crate::support::{test_config, TestHerald, TestReceiver};
    let dir = tempfile::tempdir().unwrap();
    let scripts = demo_scripts(dir.path());
    let server = TestHerald::start(test_config(dir.path(), &scripts)).await;
    let receiver = TestReceiver::start().await;
    let hook = server
        .subscribe("NewOpportunity", &receiver.url("/cli"))
        .await;
    let hook_id = hook["id"].as_str().unwrap().to_owned();
    let (path, db) = (dir.path().to_owned(), server.db.clone());
    let id = hook_id.clone();
    let output = tokio::task::spawn_blocking(move || {
        herald(
            &["backfill", &id, "NewOpportunity", "--row-ids", "1001,1000"],
            &path,
            &db,
        )
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("rows of NewOpportunity"), "{stdout}");
    assert!(stdout.contains("done: 2 queued, 0 failed"), "{stdout}");
    let got = receiver
        .wait_for(2, std::time::Duration::from_secs(10))
        .await;
    // Queued in the order given: their webhook-ids are time-ordered. (Two attempts in flight at
    // once may arrive either way round.)
    let mut queued: Vec<(String, i64)> = got
        .iter()
        .map(|r| {
            (
                r.header("webhook-id").to_owned(),
                r.json()["id"].as_i64().unwrap(),
            )
        })
        .collect();
    queued.sort();
    let ids: Vec<i64> = queued.into_iter().map(|(_, id)| id).collect();
    assert_eq!(ids, [1001, 1000], "in the order given");

    // What cannot be backfilled says why and exits 1.
    let (path, db) = (dir.path().to_owned(), server.db.clone());
    let output = tokio::task::spawn_blocking(move || {
        herald(
            &["backfill", &hook_id, "DealWon", "--row-ids", "1000"],
            &path,
            &db,
        )
    })
    .await
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("does not select 'DealWon'"), "{stderr}");
    receiver.stop();
    server.stop().await;
}
