//! What only SQLite does, run on SQLite whatever `HERALD_TEST_DB` says: the application holding
//! the file's write lock longer than herald's busy time-out (herald says it is not ready, keeps
//! what it has, and resumes when the lock is let go), and a full disk (herald cannot write the
//! file). PostgreSQL's counterparts, a server restart and cut connections, are in `postgresql.rs`.

use std::time::Duration;

use herald::database::Database;
use serde_json::Value;

use crate::crash::{free_addr, herald_command, kill9, wait_ready};
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
    let herald = TestHerald::on_sqlite(|_| {}).await;
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

    herald.app().execute(
        "INSERT INTO \"Deal\" (title, is_project, company_id) VALUES ('before the lock', 1, 1)",
        &[],
    );
    receiver.wait_for(1, Duration::from_secs(10)).await;

    // The application takes the write lock and keeps it past herald's 5 s busy time-out, writing
    // two more deals in that transaction.
    let locker = std::thread::spawn({
        let db = herald.db.sqlite_path().expect("an SQLite file").to_owned();
        move || {
            let mut conn = rusqlite::Connection::open(db).unwrap();
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .unwrap();
            for title in ["during the lock 1", "during the lock 2"] {
                tx.execute(
                    "INSERT INTO \"Deal\" (title, is_project, company_id) VALUES (?1, 1, 1)",
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

/// Sets the largest file offset `pid` may write at (`RLIMIT_FSIZE`): with 1 byte, every write of
/// SQLite's fails as on a full disk; reads go on.
fn limit_file_size(pid: u32, bytes: Option<u64>) {
    let limit = libc::rlimit {
        rlim_cur: bytes.unwrap_or(libc::RLIM_INFINITY),
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: prlimit only reads `limit`; a null old-limit pointer is allowed.
    let done = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_FSIZE,
            &limit,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(done, 0, "prlimit: {}", std::io::Error::last_os_error());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_makes_herald_not_ready_loses_nothing_and_it_resumes_when_space_returns() {
    use std::os::unix::process::CommandExt;

    let dir = tempfile::tempdir().unwrap();
    let scripts = demo_scripts(dir.path());
    let receiver = TestReceiver::start().await;
    let client = reqwest::Client::new();
    let addr = free_addr();
    // SQLite's: herald writes the database file itself (PostgreSQL's server does its own writes;
    // its counterpart is the server restart in `postgresql.rs`).
    let db = Database::Sqlite(dir.path().join("herald.db"));
    let mut command = herald_command(&db, dir.path(), &scripts, addr, None);
    // A write past the file-size limit then fails with EFBIG instead of killing the process with
    // SIGXFSZ; an ignored signal stays ignored across exec.
    // SAFETY: signal() is async-signal-safe, and nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let mut herald = command.spawn().unwrap();
    wait_ready(&client, addr).await;
    let response = client
        .post(format!("http://{addr}/EPT_WebhookSubscribe"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"event": "NewOpportunity", "target_url": receiver.url("/hook")}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let mut app = AppDb::open(&db);
    let mut insert = |title: &str| {
        app.execute(
            "INSERT INTO \"Deal\" (title, is_project, company_id) VALUES (?1, 1, 1)",
            &[Cell::Text(title.into())],
        );
    };
    insert("before the disk filled");
    receiver.wait_for(1, Duration::from_secs(10)).await;

    // The disk fills up for herald; the application (another process) still writes.
    limit_file_size(herald.id(), Some(1));
    for i in 0..5 {
        insert(&format!("while the disk was full {i}"));
    }
    let body = readiness_becomes(
        &client,
        &format!("http://{addr}"),
        503,
        Duration::from_secs(5),
    )
    .await
    .expect("herald reports not ready while it cannot write");
    assert_eq!(body["checks"]["writable"], false, "{body}");
    let message = body["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("storing events"), "{message}");
    assert_eq!(
        receiver.received().len(),
        1,
        "nothing was stored, so nothing was sent"
    );

    // Space comes back: herald resumes on its own, and each deal is delivered exactly once.
    limit_file_size(herald.id(), None);
    let got = receiver.wait_for(6, Duration::from_secs(20)).await;
    let ready = readiness_becomes(
        &client,
        &format!("http://{addr}"),
        200,
        Duration::from_secs(5),
    )
    .await;
    assert!(ready.is_some(), "herald is ready again");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let titles: Vec<String> = receiver
        .received()
        .iter()
        .map(|r| r.json()["title"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(got.len(), 6);
    assert_eq!(titles.len(), 6, "no duplicates: {titles:?}");
    for i in 0..5 {
        let title = format!("while the disk was full {i}");
        assert!(titles.contains(&title), "{title} missing from {titles:?}");
    }
    kill9(&mut herald);
}

/// `hostile_event_fails_with` on an SQLite file whatever `HERALD_TEST_DB` says.
fn on_an_sqlite_file(config: &mut herald::Config) {
    let dir = config.scripts.parent().unwrap().to_owned();
    config.db = Database::Sqlite(dir.join("scripts-on-sqlite.db"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sql_call_cannot_build_a_value_past_the_length_cap() {
    // It ran 9.3 s in one call of randomblob (out of reach of the time budget's checks), peaked at
    // 2.4 GB and succeeded.
    crate::scripts::hostile_event_fails_with(
        "// two values of 600 MB\nlet n = db_query(\"SELECT length(a) + length(b) AS n FROM (SELECT randomblob(600000000) a, randomblob(600000000) b)\");\n#{ n: n }\n",
        "string or blob too big",
        2,
        on_an_sqlite_file,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_cannot_read_the_databases_own_tables() {
    // sqlite_master gave away herald's whole schema and its triggers' SQL.
    crate::scripts::hostile_event_fails_with(
        "// herald's schema\nlet rows = db_query(\"SELECT name, sql FROM sqlite_master\");\n#{ rows: rows }\n",
        "access to sqlite_master.name is prohibited",
        2,
        on_an_sqlite_file,
    )
    .await;
}
