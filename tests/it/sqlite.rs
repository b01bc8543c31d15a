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
    // Its attempt recorded too (a receipt comes first), so that what fails next is storing events.
    let mut watcher = AppDb::open(&db);
    eventually(Duration::from_secs(10), || {
        let recorded = watcher.integer(
            "SELECT count(*) FROM herald_deliveries WHERE status = 'delivered'",
            &[],
        );
        (recorded == 1).then_some(())
    })
    .await
    .expect("the first delivery is recorded");

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

/// `herald migrate FILE.sql` in `dir` (scripts in `dir/scripts`), on `db`.
fn herald_migrate(
    dir: &std::path::Path,
    db: &std::path::Path,
    sql: &str,
    extra: &[&str],
) -> std::process::Output {
    let file = dir.join(format!("migration-{}.sql", uuid_like()));
    std::fs::write(&file, sql).unwrap();
    let mut args = vec!["--db", db.to_str().unwrap(), "migrate"];
    args.extend_from_slice(extra);
    args.push(file.to_str().unwrap());
    std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(&args)
        .env_remove("HERALD_DB")
        .env_remove("HERALD_SCRIPTS")
        .env_remove("HERALD_CONFIG")
        .env("RUST_LOG", "warn")
        .current_dir(dir)
        .output()
        .unwrap()
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The application's migrations (ADD, RENAME and DROP COLUMN, and SQLite's twelve-step rebuild of
/// a table) run through `herald migrate` while another process keeps writing: none is blocked by
/// herald's triggers, every change is delivered once, the migration's own copy is no change, and
/// the events after each carry the new layout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_through_herald_migrate_lose_no_change_while_writes_go_on() {
    let herald = TestHerald::on_sqlite(|_| {}).await;
    let db = herald.db.sqlite_path().unwrap().to_owned();
    let dir = db.parent().unwrap().to_owned();
    let receiver = TestReceiver::start().await;
    herald
        .create_hook(serde_json::json!({
            "target_url": receiver.url("/deals"),
            "company_id": 1,
            "events": ["Deal.create"],
        }))
        .await;

    // Without herald migrate, herald's triggers (they name every column) refuse a DROP COLUMN.
    let mut app = herald.app();
    let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        app.execute("ALTER TABLE Deal DROP COLUMN contact_id", &[])
    }));
    assert!(
        refused.is_err(),
        "SQLite refuses it while herald's triggers name the column"
    );

    const WRITES: usize = 400;
    let writer = {
        let db = db.clone();
        std::thread::spawn(move || {
            let conn = rusqlite::Connection::open(&db).unwrap();
            conn.busy_timeout(Duration::from_secs(30)).unwrap();
            for i in 0..WRITES {
                conn.execute(
                    "INSERT INTO Deal (title, is_project, company_id) VALUES (?1, 0, 1)",
                    [format!("w{i}")],
                )
                .unwrap();
                std::thread::sleep(Duration::from_millis(4));
            }
        })
    };
    let migrations = [
        "ALTER TABLE Deal ADD COLUMN region TEXT DEFAULT 'south';",
        "ALTER TABLE Deal RENAME COLUMN region TO area;",
        "ALTER TABLE Deal DROP COLUMN contact_id;",
        "CREATE TABLE Deal_new (
             id INTEGER PRIMARY KEY,
             title TEXT NOT NULL,
             amount REAL,
             stage TEXT NOT NULL DEFAULT 'lead',
             is_project INTEGER NOT NULL DEFAULT 0,
             company_id INTEGER REFERENCES Company(id),
             project_id INTEGER REFERENCES Project(id),
             created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
             area TEXT DEFAULT 'south',
             probability REAL DEFAULT 0.5
         );
         INSERT INTO Deal_new (id, title, amount, stage, is_project, company_id, project_id, created_at, area)
             SELECT id, title, amount, stage, is_project, company_id, project_id, created_at, area FROM Deal;
         DROP TABLE Deal;
         ALTER TABLE Deal_new RENAME TO Deal;",
    ];
    for sql in migrations {
        let output = {
            let (dir, db) = (dir.clone(), db.clone());
            tokio::task::spawn_blocking(move || herald_migrate(&dir, &db, sql, &[]))
                .await
                .unwrap()
        };
        assert!(
            output.status.success(),
            "{sql}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::task::spawn_blocking(move || writer.join().unwrap())
        .await
        .unwrap();
    herald.insert_deal(Deal {
        company_id: Some(1),
        ..Deal::titled("after all")
    });

    let got = receiver.wait_for(WRITES + 1, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let titles: Vec<String> = receiver
        .received()
        .iter()
        .map(|r| {
            r.json()["row"]["title"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    for title in &titles {
        assert!(seen.insert(title.clone()), "{title} delivered twice");
    }
    for i in 0..WRITES {
        assert!(seen.contains(&format!("w{i}")), "w{i} was lost");
    }
    assert_eq!(titles.len(), WRITES + 1, "the rebuild's copy is no change");
    let last = got.last().unwrap().json();
    let last = receiver
        .received()
        .iter()
        .map(|r| r.json())
        .find(|j| j["row"]["title"] == "after all")
        .unwrap_or(last);
    assert_eq!(last["row"]["area"], "south", "{last}");
    assert_eq!(last["row"]["probability"], 0.5, "{last}");
    assert!(last["row"].get("contact_id").is_none(), "{last}");
    let failures = herald.store().recent_script_failures(10).unwrap();
    assert!(failures.is_empty(), "{failures:?}");
    herald.stop().await;
}

/// A migration tool that runs its own SQL gets what to run around it; a rebuild made behind
/// herald's back is reported where the administrator looks, and tracking resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_behind_heralds_back_is_reported_and_the_print_out_is_what_to_run_instead() {
    let herald = TestHerald::on_sqlite(|_| {}).await;
    let db = herald.db.sqlite_path().unwrap().to_owned();
    let dir = db.parent().unwrap().to_owned();
    let receiver = TestReceiver::start().await;
    herald
        .create_hook(serde_json::json!({
            "target_url": receiver.url("/deals"),
            "company_id": 1,
            "events": ["Deal.create"],
        }))
        .await;
    let rebuild = "CREATE TABLE Deal_new (id INTEGER PRIMARY KEY, title TEXT NOT NULL, amount REAL,
             stage TEXT NOT NULL DEFAULT 'lead', is_project INTEGER NOT NULL DEFAULT 0,
             company_id INTEGER, project_id INTEGER, created_at TEXT);
         INSERT INTO Deal_new SELECT id, title, amount, stage, is_project, company_id, project_id, created_at FROM Deal;
         DROP TABLE Deal;
         ALTER TABLE Deal_new RENAME TO Deal;";

    // What to run around it: herald's triggers dropped before, made after; nothing changed yet.
    let printed = {
        let (dir, db) = (dir.clone(), db.clone());
        tokio::task::spawn_blocking(move || {
            herald_migrate(&dir, &db, rebuild, &["--print-triggers"])
        })
        .await
        .unwrap()
    };
    assert!(
        printed.status.success(),
        "{}",
        String::from_utf8_lossy(&printed.stderr)
    );
    let printed = String::from_utf8(printed.stdout).unwrap();
    assert!(
        printed.contains("DROP TRIGGER IF EXISTS \"herald_track_Deal_insert\";"),
        "{printed}"
    );
    assert!(
        printed.contains("CREATE TRIGGER \"herald_track_Deal_insert\" AFTER INSERT ON \"Deal\""),
        "{printed}"
    );
    assert!(
        !printed.contains("contact_id"),
        "the layout after the migration: {printed}"
    );
    let mut app = herald.app();
    assert_eq!(
        app.integer(
            "SELECT count(*) FROM pragma_table_info('Deal') WHERE name = 'contact_id'",
            &[]
        ),
        1,
        "--print-triggers changes nothing"
    );

    // The rebuild behind herald's back: its triggers go with the old table.
    app.batch(&format!("BEGIN; {rebuild} COMMIT;"));
    let store = herald.store();
    let failure = eventually(Duration::from_secs(10), || {
        store
            .recent_script_failures(10)
            .unwrap()
            .into_iter()
            .find(|f| f.message.contains("without herald's tracking triggers"))
    })
    .await
    .expect("the lost triggers are reported");
    assert_eq!(failure.table.as_deref(), Some("Deal"));
    assert!(
        failure.message.contains("herald migrate"),
        "{}",
        failure.message
    );

    // Tracking resumes on the new table.
    app.execute(
        "INSERT INTO Deal (title, is_project, company_id) VALUES ('after the rebuild', 0, 1)",
        &[],
    );
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].json()["row"]["title"], "after the rebuild");
    herald.stop().await;
}
