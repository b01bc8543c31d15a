//! What only PostgreSQL does, run on the test PostgreSQL server whatever `HERALD_TEST_DB` says:
//! transactions that commit out of id order, the application changing a tracked table's columns
//! while herald runs, the application writing as a role of its own, scripts trying to get out of
//! their read-only role, the server restarting and herald's connections being cut, and clear
//! errors for a database that cannot be reached. (SQLite's counterparts are in `sqlite.rs`.)

use std::collections::HashMap;
use std::time::Duration;

use herald::database::Database;
use serde_json::{json, Value};

use crate::pg_server;
use crate::support::*;

/// `demo` on a fresh database of the test PostgreSQL server.
async fn on_postgres(tweak: impl FnOnce(&mut herald::Config)) -> TestHerald {
    on_database(off_the_runtime(pg_server::fresh_database), tweak).await
}

async fn on_database(url: String, tweak: impl FnOnce(&mut herald::Config)) -> TestHerald {
    let dir = tempfile::tempdir().unwrap();
    let scripts = demo_scripts(dir.path());
    let mut config = test_config_on(Database::parse(&url).unwrap(), dir.path(), &scripts);
    tweak(&mut config);
    TestHerald::start_in(config, dir).await
}

fn titles(receiver: &TestReceiver) -> Vec<String> {
    receiver
        .received()
        .iter()
        .map(|r| r.json()["title"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_that_commits_after_later_ones_is_delivered_once_not_skipped() {
    let herald = on_postgres(|_| {}).await;
    let receiver = TestReceiver::start().await;
    herald
        .subscribe("NewOpportunity", &receiver.url("/hook"))
        .await;
    // A long transaction takes its change id first...
    let mut late = herald.app();
    late.batch("BEGIN");
    late.execute(
        "INSERT INTO \"Deal\" (title, is_project) VALUES ('late', 1)",
        &[],
    );
    // ...then 50 others take higher ids, commit and are delivered.
    let mut app = herald.app();
    for i in 0..50 {
        app.execute(
            "INSERT INTO \"Deal\" (title, is_project) VALUES (?1, 1)",
            &[Cell::Text(format!("early {i}"))],
        );
    }
    receiver.wait_for(50, Duration::from_secs(20)).await;
    assert!(!titles(&receiver).contains(&"late".to_owned()));
    // The lower id commits last: it is read by the next batch, not left behind the others.
    late.batch("COMMIT");
    receiver.wait_for(51, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = titles(&receiver);
    assert_eq!(got.len(), 51, "{got:?}");
    assert_eq!(got.last().map(String::as_str), Some("late"));
    let counts = app.rows(
        "SELECT count(*), count(DISTINCT row_id) FROM herald_events",
        &[],
    );
    assert_eq!((counts[0][0].integer(), counts[0][1].integer()), (51, 51));
    assert_eq!(app.integer("SELECT count(*) FROM herald_changes", &[]), 0);
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_changes_a_tracked_tables_columns_while_herald_runs() {
    let herald = on_postgres(|_| {}).await;
    let receiver = TestReceiver::start().await;
    herald
        .create_hook(json!({
            "target_url": receiver.url("/grid"),
            "company_id": 1,
            "events": ["Deal.create", "Deal.update"],
        }))
        .await;
    let mut app = herald.app();
    let id = app.insert(
        "INSERT INTO \"Deal\" (title, is_project, company_id) VALUES ('before', 0, 1)",
        &[],
    );
    receiver.wait_for(1, Duration::from_secs(10)).await;

    // Each migration goes through while herald tracks the table...
    app.batch("ALTER TABLE \"Deal\" ADD COLUMN priority integer NOT NULL DEFAULT 3");
    app.execute(
        "UPDATE \"Deal\" SET stage = 'proposal' WHERE id = ?1",
        &[Cell::Integer(id)],
    );
    app.batch("ALTER TABLE \"Deal\" RENAME COLUMN amount TO price");
    app.execute(
        "UPDATE \"Deal\" SET price = 12.5 WHERE id = ?1",
        &[Cell::Integer(id)],
    );
    app.batch("ALTER TABLE \"Deal\" DROP COLUMN contact_id");
    app.execute(
        "UPDATE \"Deal\" SET stage = 'lead' WHERE id = ?1",
        &[Cell::Integer(id)],
    );
    // ...and the next change carries the columns as they are.
    let mut got: Vec<Value> = receiver
        .wait_for(4, Duration::from_secs(10))
        .await
        .iter()
        .map(|r| r.json())
        .collect();
    // In the order of the changes (event ids are time-ordered), not of arrival.
    got.sort_by_key(|envelope| envelope["id"].as_str().unwrap_or_default().to_owned());
    let rows: Vec<Value> = got.iter().map(|envelope| envelope["row"].clone()).collect();
    assert_eq!(rows[0]["title"], "before");
    assert!(rows[0].get("priority").is_none(), "{}", rows[0]);
    assert_eq!(rows[1]["priority"], 3, "{}", rows[1]);
    assert_eq!(rows[2]["price"], 12.5, "{}", rows[2]);
    assert!(rows[2].get("amount").is_none(), "{}", rows[2]);
    assert!(rows[3].get("contact_id").is_none(), "{}", rows[3]);
    assert_eq!(rows[3]["stage"], "lead");
    assert_eq!(got[3]["old_row"]["stage"], "proposal");
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_writing_as_its_own_role_is_tracked() {
    let herald = on_postgres(|_| {}).await;
    let receiver = TestReceiver::start().await;
    herald
        .subscribe("NewOpportunity", &receiver.url("/hook"))
        .await;
    let Database::Postgres(url) = &herald.db else {
        unreachable!()
    };
    let role = format!(
        "crm_app_{}",
        url.config().unwrap().get_dbname().unwrap_or_default()
    );
    let mut admin = herald.app();
    admin.batch(&format!(
        "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN PASSWORD 'crm-app-password';
         GRANT USAGE ON SCHEMA public TO {role};
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};
         GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role};"
    ));
    let mut config = url.config().unwrap();
    config.user(&role).password("crm-app-password");
    off_the_runtime(|| {
        let mut crm = config.connect(postgres::NoTls).unwrap();
        // It cannot see herald's tables...
        let peek = crm.query("SELECT * FROM herald.herald_hooks", &[]);
        assert!(
            peek.is_err(),
            "the application's role reads herald's tables"
        );
        // ...and its writes are tracked all the same.
        crm.execute(
            "INSERT INTO \"Deal\" (title, is_project) VALUES ('written by the CRM', 1)",
            &[],
        )
        .unwrap();
    });
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].json()["title"], "written by the CRM");
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_cannot_leave_their_read_only_role() {
    let attempts = [
        (
            "reads herald's tables",
            "SELECT secret FROM herald.herald_hooks",
        ),
        ("writes", "DELETE FROM \\\"Deal\\\""),
        (
            "writes in a CTE",
            "WITH gone AS (DELETE FROM \\\"Deal\\\" RETURNING id) SELECT * FROM gone",
        ),
        ("changes role", "SET ROLE postgres"),
        ("copies out", "COPY \\\"Deal\\\" TO STDOUT"),
        ("reads a server file", "SELECT pg_read_file('/etc/passwd')"),
        (
            "calls dblink",
            "SELECT * FROM dblink('dbname=postgres', 'SELECT 1') AS t(x int)",
        ),
        (
            "locks a table",
            "LOCK TABLE \\\"Deal\\\" IN ACCESS EXCLUSIVE MODE",
        ),
        ("locks rows", "SELECT * FROM \\\"Deal\\\" FOR UPDATE"),
        ("commits its way out", "COMMIT"),
        ("unsets the timeout", "SET statement_timeout = 0"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let scripts = demo_scripts(dir.path());
    // Each attempt is one body script; one notification script fires them all for one deal.
    let mut fire = String::new();
    for (i, (_, sql)) in attempts.iter().enumerate() {
        std::fs::write(
            scripts.join(format!("GetWebhookResponseBody_Escape{i}.rhai")),
            format!("// tries to leave\nlet rows = db_query(\"{sql}\");\n#{{ rows: rows }}\n"),
        )
        .unwrap();
        fire.push_str(&format!("trigger_webhook_event(\"Escape{i}\", row_id);\n"));
    }
    std::fs::write(
        scripts.join("SysNotification_Contact_ParseForEach.rhai"),
        format!("if action_key == \"insert\" {{\n{fire}}}\n"),
    )
    .unwrap();
    let config = test_config_on(
        Database::parse(&off_the_runtime(pg_server::fresh_database)).unwrap(),
        dir.path(),
        &scripts,
    );
    let herald = TestHerald::start_in(config, dir).await;
    let receiver = TestReceiver::start().await;
    for i in 0..attempts.len() {
        herald
            .subscribe(&format!("Escape{i}"), &receiver.url("/escape"))
            .await;
    }
    herald.app().execute(
        "INSERT INTO \"Contact\" (first_name, last_name) VALUES ('Eve', 'Escape')",
        &[],
    );
    let store = herald.store();
    let failures = eventually(Duration::from_secs(10), || {
        let failures = store.recent_script_failures(50).unwrap();
        (failures.len() >= attempts.len()).then_some(failures)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "every attempt fails: {:?}",
            store.recent_script_failures(50)
        )
    });
    let by_script: HashMap<String, _> = failures
        .iter()
        .map(|f| (f.script.clone(), f.clone()))
        .collect();
    for (i, (what, _)) in attempts.iter().enumerate() {
        let failure = &by_script[&format!("GetWebhookResponseBody_Escape{i}.rhai")];
        assert_eq!(
            (failure.line, failure.col),
            (Some(2), Some(12)),
            "{what}: {failure:?}"
        );
        assert!(
            failure.message.starts_with("db_query: "),
            "{what}: {failure:?}"
        );
    }
    assert!(receiver.received().is_empty(), "no escape was delivered");
    // The demo table is whole.
    assert_eq!(
        herald.app().integer("SELECT count(*) FROM \"Deal\"", &[]),
        2
    );
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_during_deliveries_loses_nothing() {
    let server = off_the_runtime(pg_server::private_server);
    let database = "restarted";
    off_the_runtime(|| {
        server
            .0
            .connect("postgres")
            .batch_execute(&format!("CREATE DATABASE {database}"))
            .unwrap()
    });
    let herald = on_database(server.0.url(database), |_| {}).await;
    let receiver = TestReceiver::start().await;
    // Slow answers, so that attempts are in flight when the server goes.
    receiver.answer_always(Answer {
        delay: Duration::from_millis(300),
        ..Answer::status(200)
    });
    herald
        .subscribe("NewOpportunity", &receiver.url("/hook"))
        .await;
    let mut app = herald.app();
    for i in 0..20 {
        app.execute(
            "INSERT INTO \"Deal\" (title, is_project) VALUES (?1, 1)",
            &[Cell::Text(format!("before {i}"))],
        );
    }
    drop(app);
    receiver.wait_for(1, Duration::from_secs(10)).await;

    off_the_runtime(|| server.0.stop(true));
    let down = readiness_becomes(
        &herald.client,
        &herald.url(""),
        503,
        Duration::from_secs(10),
    )
    .await;
    assert!(
        down.is_some(),
        "herald is not ready while its database is down"
    );
    off_the_runtime(|| server.0.start_postgres());
    let up = readiness_becomes(
        &herald.client,
        &herald.url(""),
        200,
        Duration::from_secs(20),
    )
    .await;
    if up.is_none() {
        let body = herald
            .client
            .get(herald.url("/readyz"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        panic!("herald is ready again once the server is back: {body}");
    }

    let mut app = herald.app();
    for i in 0..5 {
        app.execute(
            "INSERT INTO \"Deal\" (title, is_project) VALUES (?1, 1)",
            &[Cell::Text(format!("after {i}"))],
        );
    }
    let expected: Vec<String> = (0..20)
        .map(|i| format!("before {i}"))
        .chain((0..5).map(|i| format!("after {i}")))
        .collect();
    let all_there = eventually(Duration::from_secs(60), || {
        let got = titles(&receiver);
        expected.iter().all(|t| got.contains(t)).then_some(got)
    })
    .await;
    if all_there.is_none() {
        let got = titles(&receiver);
        let missing: Vec<&String> = expected.iter().filter(|t| !got.contains(t)).collect();
        let waiting = app.rows(
            "SELECT d.status, d.attempts, d.next_attempt_at, d.leased_by FROM herald_deliveries d
             WHERE d.status NOT IN ('delivered')",
            &[],
        );
        let changes = app.integer("SELECT count(*) FROM herald_changes", &[]);
        panic!(
            "not delivered: {missing:?}; deliveries not delivered: {waiting:?}; changes left: \
             {changes}; received: {got:?}"
        );
    }
    assert_eq!(
        app.integer("SELECT count(*) FROM herald_events", &[]),
        25,
        "each change's event stored once"
    );
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_comes_back_after_its_connections_are_cut() {
    let herald = on_postgres(|_| {}).await;
    let receiver = TestReceiver::start().await;
    herald
        .subscribe("NewOpportunity", &receiver.url("/hook"))
        .await;
    herald.insert_deal(Deal {
        is_project: true,
        ..Deal::titled("before the cut")
    });
    receiver.wait_for(1, Duration::from_secs(10)).await;
    let Database::Postgres(url) = &herald.db else {
        unreachable!()
    };
    let database = url.config().unwrap().get_dbname().unwrap().to_owned();
    let cut = off_the_runtime(|| {
        pg_server::server()
            .connect("postgres")
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&database],
            )
            .unwrap()
    });
    assert!(!cut.is_empty(), "herald had connections to cut");
    for i in 0..3 {
        herald.insert_deal(Deal {
            is_project: true,
            ..Deal::titled(&format!("after the cut {i}"))
        });
    }
    let got = receiver.wait_for(4, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().len(), 4, "{:?}", titles(&receiver));
    assert_eq!(got.len(), 4);
    let ready = readiness_becomes(
        &herald.client,
        &herald.url(""),
        200,
        Duration::from_secs(10),
    )
    .await;
    assert!(ready.is_some());
    herald.stop().await;
}

/// `herald serve --db url`, which must stop at once with exit code 1 and one line that says why
/// (and never a password of the tests', `hunter2`, nor a panic): that line.
fn serve_refused(url: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    demo_scripts(dir.path());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["serve", "--db", url, "--listen", "127.0.0.1:0"])
        .env_remove("HERALD_CONFIG")
        .env("HERALD_API_TOKEN", TOKEN)
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A herald that starts after all would serve for ever.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("herald serve --db {url} did not stop within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{url}: {stderr}");
    assert!(!stderr.contains("hunter2"), "the password leaked: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("herald: "))
        .collect();
    assert_eq!(errors.len(), 1, "one line: {stderr}");
    errors[0].to_owned()
}

#[test]
fn a_database_that_cannot_be_reached_is_one_line_without_the_password() {
    let server = pg_server::server();
    let refused = serve_refused("postgres://app:hunter2@127.0.0.1:1/crm");
    assert!(
        refused.contains("postgres://app@127.0.0.1:1/crm"),
        "{refused}"
    );
    assert!(refused.contains("refused"), "{refused}");

    let mut admin = server.connect("postgres");
    let role = format!("wrong_password_{}", std::process::id());
    admin
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN PASSWORD 'right-one'"
        ))
        .unwrap();
    let wrong = serve_refused(&format!(
        "postgres://{role}:hunter2@127.0.0.1:{}/postgres",
        server.port
    ));
    assert!(wrong.contains("password authentication failed"), "{wrong}");

    let missing = serve_refused(&format!(
        "postgres://postgres:hunter2@127.0.0.1:{}/no_such_database",
        server.port
    ));
    assert!(missing.contains("does not exist"), "{missing}");

    // A role that may not create herald's schema is told what to do.
    let database = pg_server::fresh_database();
    let db_name = database.rsplit('/').next().unwrap().to_owned();
    admin
        .batch_execute(&format!("REVOKE CREATE ON DATABASE {db_name} FROM PUBLIC"))
        .unwrap();
    let unprivileged = serve_refused(&format!(
        "postgres://{role}:right-one@127.0.0.1:{}/{db_name}",
        server.port
    ));
    assert!(unprivileged.contains("herald's schema"), "{unprivileged}");
    assert!(unprivileged.contains("README"), "{unprivileged}");

    let garbled = serve_refused("postgres://app:hunter2@127.0.0.1:notaport/crm");
    assert!(garbled.contains("not valid"), "{garbled}");
}

/// herald reads `sslmode` as `psql` does: with `verify-full` and the authority that signed the
/// server's certificate every connection it opens (its pool, the change feed's, the scripts'
/// read-only role's) is encrypted and events flow; `verify-ca` does not check the host name; a
/// scripts' URL without TLS settings follows herald's; a certificate for another name, or one no
/// trusted authority signed, is one clear line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_connects_over_tls_and_checks_the_certificate_as_sslmode_says() {
    let certificates = pg_server::TestCertificates::make();
    let settings = certificates.server_settings();
    let server = off_the_runtime(|| {
        pg_server::private_server_with(&settings.iter().map(String::as_str).collect::<Vec<_>>())
    });
    let port = server.0.port;
    // A blocking client is made and dropped off the runtime each time it is needed.
    let admin = || server.0.connect("postgres");
    off_the_runtime(|| {
        let mut admin = admin();
        admin
            .batch_execute("CREATE ROLE tls_scripts LOGIN PASSWORD 'scripts-pw'")
            .unwrap();
        for database in ["crm", "crm2", "crm3"] {
            admin
                .batch_execute(&format!("CREATE DATABASE {database}"))
                .unwrap();
        }
    });
    let authority = certificates.authority.display().to_string();
    let url = |host: &str, database: &str, query: &str| {
        format!("postgres://postgres@{host}:{port}/{database}?{query}")
    };
    // The application's insert, over a connection of its own without TLS.
    let new_opportunity = |database: &str, title: &str| {
        let plain = Database::parse(&url("127.0.0.1", database, "sslmode=disable")).unwrap();
        off_the_runtime(|| {
            insert_deal_with(
                &mut crate::app_db::AppDb::open(&plain),
                Deal {
                    is_project: true,
                    ..Deal::titled(title)
                },
            )
        })
    };

    let herald = on_database(
        url(
            "localhost",
            "crm",
            &format!("sslmode=verify-full&sslrootcert={authority}"),
        ),
        |_| {},
    )
    .await;
    let receiver = TestReceiver::start().await;
    herald
        .subscribe("NewOpportunity", &receiver.url("/hook"))
        .await;
    new_opportunity("crm", "over TLS");
    receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(titles(&receiver), ["over TLS"]);
    let heralds: Vec<(String, bool)> = off_the_runtime(|| {
        admin()
            .query(
                "SELECT a.usename::text, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
                 WHERE a.datname = 'crm' AND a.application_name LIKE 'herald%'",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    });
    assert!(heralds.iter().all(|(_, ssl)| *ssl), "{heralds:?}");
    let roles: std::collections::BTreeSet<&str> = heralds.iter().map(|(u, _)| u.as_str()).collect();
    assert!(
        roles.len() >= 2,
        "herald's own connections and the scripts' role's: {heralds:?}"
    );
    herald.stop().await;

    // The chain alone: the certificate names localhost, not 127.0.0.1. (Another database: this
    // herald has a secret key of its own.)
    let herald = on_database(
        url(
            "127.0.0.1",
            "crm2",
            &format!("sslmode=verify-ca&sslrootcert={authority}"),
        ),
        |_| {},
    )
    .await;
    herald.stop().await;

    // A scripts' URL that says nothing of TLS connects as herald's own URL says: here not at all,
    // where on its own it would have encrypted (`prefer`, and the server offers TLS).
    let herald = on_database(url("127.0.0.1", "crm3", "sslmode=disable"), |config| {
        config.postgres.script_url = Some(
            herald::database::PostgresUrl::parse(&format!(
                "postgres://tls_scripts:scripts-pw@127.0.0.1:{port}/crm3"
            ))
            .unwrap(),
        )
    })
    .await;
    herald
        .subscribe("NewOpportunity", &receiver.url("/hook"))
        .await;
    new_opportunity("crm3", "scripts in clear");
    receiver.wait_for(2, Duration::from_secs(10)).await;
    let scripts: Vec<bool> = off_the_runtime(|| {
        admin()
            .query(
                "SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
                 WHERE a.datname = 'crm3' AND a.usename = 'tls_scripts'",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    });
    assert!(
        !scripts.is_empty() && scripts.iter().all(|ssl| !ssl),
        "{scripts:?}"
    );
    herald.stop().await;

    let wrong_name = off_the_runtime(|| {
        serve_refused(&url(
            "127.0.0.1",
            "crm",
            &format!("sslmode=verify-full&sslrootcert={authority}"),
        ))
    });
    assert!(
        wrong_name.contains("certificate") && wrong_name.contains("127.0.0.1"),
        "{wrong_name}"
    );
    let unknown_authority =
        off_the_runtime(|| serve_refused(&url("localhost", "crm", "sslmode=verify-full")));
    assert!(
        unknown_authority.contains("certificate"),
        "{unknown_authority}"
    );
    let no_file = off_the_runtime(|| {
        serve_refused(&url(
            "localhost",
            "crm",
            "sslmode=verify-full&sslrootcert=/no/such/ca.pem",
        ))
    });
    assert!(no_file.contains("/no/such/ca.pem"), "{no_file}");
}

/// The README's SQL for a DBA, run as it is written, then herald on the roles it makes: herald
/// starts, tracks, delivers, and its scripts read through the DBA's role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_runs_on_a_role_a_dba_prepared_with_the_readmes_sql() {
    let url = off_the_runtime(pg_server::fresh_database);
    let database = url.rsplit('/').next().unwrap().to_owned();
    let suffix = database.trim_start_matches("herald_test_").to_owned();
    let (herald_role, scripts_role) = (
        format!("herald_app_{suffix}"),
        format!("herald_scripts_{suffix}"),
    );
    // The application's own tables, made by their owner.
    let schema_sql = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/schema.postgres.sql"
    ))
    .unwrap();
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let dba_sql = readme
        .split("**A less privileged role.**")
        .nth(1)
        .and_then(|rest| rest.split("```sql").nth(1))
        .and_then(|block| block.split("```").next())
        .expect("README.md has the DBA's SQL")
        .replace("herald_app", &herald_role)
        .replace("herald_scripts", &scripts_role)
        .replace("DATABASE crm", &format!("DATABASE {database}"))
        .replace("'...'", "'prepared-by-the-dba'");
    off_the_runtime(|| {
        let mut owner = pg_server::server().connect(&database);
        owner.batch_execute(&schema_sql).unwrap();
        owner
            .batch_execute(&dba_sql)
            .unwrap_or_else(|e| panic!("{dba_sql}: {e}"));
    });
    let port = pg_server::server().port;
    let dir = tempfile::tempdir().unwrap();
    let scripts = demo_scripts(dir.path());
    // The application makes its own tables (above); herald, which may not, applies no schema.
    std::fs::remove_file(scripts.join("schema.postgres.sql")).unwrap();
    let herald_url =
        format!("postgres://{herald_role}:prepared-by-the-dba@127.0.0.1:{port}/{database}");
    let mut config = test_config_on(Database::parse(&herald_url).unwrap(), dir.path(), &scripts);
    config.postgres.script_url = Some(
        herald::database::PostgresUrl::parse(&format!(
            "postgres://{scripts_role}:prepared-by-the-dba@127.0.0.1:{port}/{database}"
        ))
        .unwrap(),
    );
    let herald = TestHerald::start_in(config, dir).await;
    let receiver = TestReceiver::start().await;
    herald
        .subscribe("NewOpportunity", &receiver.url("/hook"))
        .await;
    // The application writes as the tables' owner.
    off_the_runtime(|| {
        pg_server::server()
            .connect(&database)
            .execute(
                "INSERT INTO \"Deal\" (title, is_project, company_id) VALUES ('prepared', 1, 2)",
                &[],
            )
            .unwrap()
    });
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    // The body script read the company through the scripts' role.
    assert_eq!(got[0].json()["company"]["name"], "Borealis Builders");
    herald.stop().await;
}

/// What scripts get from PostgreSQL's types, as docs/scripting.md says, and `?` parameters read as
/// the type the query needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_read_postgresql_values_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let scripts = demo_scripts(dir.path());
    std::fs::write(
        scripts.join("GetWebhookResponseBody_Typed.rhai"),
        "let row = db_query_one(\"SELECT * FROM \\\"Typed\\\" WHERE id = ? AND ref = ? AND flag = ? AND at > ?\",\n\
         [1, \"6f2c1a7e-5b1d-4c43-9a57-2f0a3c1d9e11\", 1, \"2000-01-01T00:00:00Z\"]);\n\
         [#{ row: row, kinds: row.values().map(|v| type_of(v)) }]\n",
    )
    .unwrap();
    let url = off_the_runtime(pg_server::fresh_database);
    off_the_runtime(|| {
        let database = url.rsplit('/').next().unwrap().to_owned();
        pg_server::server()
            .connect(&database)
            .batch_execute(
                "CREATE TABLE \"Typed\" (
                     id integer PRIMARY KEY, price numeric(10, 2), ratio real, flag boolean,
                     ref uuid, at timestamptz, day date, doc jsonb, tags text[], raw bytea,
                     note text, missing text);
                 INSERT INTO \"Typed\" VALUES (1, 1234.50, 0.5, true,
                     '6f2c1a7e-5b1d-4c43-9a57-2f0a3c1d9e11', '2026-12-04 10:00:00.25+01',
                     '2026-12-04', '{\"a\": [1, \"b\"]}', ARRAY['x', 'y'], '\\x00ff', 'n', NULL);",
            )
            .unwrap();
    });
    let config = test_config_on(Database::parse(&url).unwrap(), dir.path(), &scripts);
    let herald = TestHerald::start_in(config, dir).await;
    let (status, samples) = herald.get("/EPT_WebhookPerformList?event=Typed").await;
    assert_eq!(status, 200, "{samples}");
    let row = &samples[0]["row"];
    assert_eq!(row["id"], 1);
    assert_eq!(row["price"], 1234.5);
    assert_eq!(row["ratio"], 0.5);
    assert_eq!(row["flag"], true);
    assert_eq!(row["ref"], "6f2c1a7e-5b1d-4c43-9a57-2f0a3c1d9e11");
    assert_eq!(row["at"], "2026-12-04T09:00:00.25Z");
    assert_eq!(row["day"], "2026-12-04");
    assert_eq!(row["doc"], json!({"a": [1, "b"]}));
    assert_eq!(row["tags"], json!(["x", "y"]));
    assert_eq!(row["note"], "n");
    assert_eq!(row["missing"], Value::Null);
    let kinds: Vec<&str> = samples[0]["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"blob"), "bytea is a blob: {kinds:?}");
    assert!(kinds.contains(&"bool"), "{kinds:?}");
    herald.stop().await;
}

/// herald's tables go in the schema it is told, the application's stay where they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heralds_tables_go_in_the_schema_it_is_told() {
    let herald = on_postgres(|config| config.postgres.schema = "crm_webhooks".into()).await;
    let receiver = TestReceiver::start().await;
    herald
        .subscribe("NewOpportunity", &receiver.url("/hook"))
        .await;
    herald.insert_deal(Deal {
        is_project: true,
        ..Deal::titled("in its own schema")
    });
    receiver.wait_for(1, Duration::from_secs(10)).await;
    let mut app = herald.app();
    let placed = app.rows(
        "SELECT table_schema, table_name FROM information_schema.tables
         WHERE table_name IN ('herald_hooks', 'Deal') ORDER BY table_name",
        &[],
    );
    let placed: Vec<(String, String)> = placed.iter().map(|r| (r[0].text(), r[1].text())).collect();
    assert_eq!(
        placed,
        [
            ("public".to_owned(), "Deal".to_owned()),
            ("crm_webhooks".to_owned(), "herald_hooks".to_owned())
        ]
    );
    herald.stop().await;
}

/// A tracker stuck inside one step (here: its commit waits on a lock another session holds) makes
/// the node not ready within the script budget and a margin, and the metrics say how far behind
/// the change log is; both recover once the lock goes, and the change is delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_tracker_makes_the_node_not_ready_and_its_lag_shows() {
    let herald = on_postgres(|config| {
        config.sandbox.time_budget = Duration::from_secs(1);
    })
    .await;
    let receiver = TestReceiver::start().await;
    herald
        .subscribe("NewOpportunity", &receiver.url("/hook"))
        .await;
    herald.insert_deal(Deal {
        is_project: true,
        ..Deal::titled("before")
    });
    receiver.wait_for(1, Duration::from_secs(10)).await;
    assert!(
        readiness_becomes(&herald.client, &herald.url(""), 200, Duration::from_secs(5))
            .await
            .is_some()
    );

    // Storing events now waits for this session's lock; the application still writes.
    let mut locker = herald.app();
    locker.batch("BEGIN; LOCK TABLE herald_events IN EXCLUSIVE MODE");
    herald.insert_deal(Deal {
        is_project: true,
        ..Deal::titled("stuck")
    });
    let stalled = readiness_becomes(
        &herald.client,
        &herald.url(""),
        503,
        Duration::from_secs(20),
    )
    .await
    .expect("a stalled tracker makes the node not ready");
    assert_eq!(stalled["checks"]["tracking"], false, "{stalled}");
    let message = stalled["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("the tracker has not moved for"),
        "{message}"
    );
    let text = reqwest::get(herald.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        crate::operations::sample(&text, "herald_changes_waiting"),
        Some(1.0),
        "{text}"
    );
    let age = crate::operations::sample(&text, "herald_oldest_waiting_change_age_seconds").unwrap();
    assert!(age >= 5.0, "the stuck change waits: {age} s");

    locker.batch("ROLLBACK");
    receiver.wait_for(2, Duration::from_secs(10)).await;
    assert!(
        readiness_becomes(
            &herald.client,
            &herald.url(""),
            200,
            Duration::from_secs(10)
        )
        .await
        .is_some(),
        "ready again once the tracker moves"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(titles(&receiver), ["before", "stuck"]);
    herald.stop().await;
}

/// `herald migrate` on PostgreSQL: the migration and herald's triggers in one transaction (its
/// triggers name no column, so nothing needs dropping first), and `--print-triggers` gives the
/// statements a migration tool runs after its own SQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_migrate_runs_the_applications_migration_on_postgresql() {
    let herald = on_postgres(|_| {}).await;
    let receiver = TestReceiver::start().await;
    herald
        .create_hook(json!({
            "target_url": receiver.url("/deals"),
            "company_id": 1,
            "events": ["Deal.create"],
        }))
        .await;
    let dir = herald
        .secret_key_file
        .as_ref()
        .unwrap()
        .parent()
        .unwrap()
        .to_owned();
    let url = herald.db.as_argument().into_string().unwrap();
    let migration = dir.join("0042_area.sql");
    std::fs::write(
        &migration,
        "ALTER TABLE \"Deal\" ADD COLUMN area text DEFAULT 'south';\nALTER TABLE \"Deal\" DROP COLUMN contact_id;\n",
    )
    .unwrap();
    let run = move |extra: &'static [&'static str]| {
        let (dir, url, migration) = (dir.clone(), url.clone(), migration.clone());
        move || {
            let mut args = vec!["--db", url.as_str(), "migrate"];
            args.extend_from_slice(extra);
            args.push(migration.to_str().unwrap());
            std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
                .args(&args)
                .env_remove("HERALD_CONFIG")
                .env_remove("HERALD_DB")
                .env("RUST_LOG", "warn")
                .current_dir(&dir)
                .output()
                .unwrap()
        }
    };
    let printed = tokio::task::spawn_blocking(run(&["--print-triggers"]))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&printed.stdout);
    assert!(
        printed.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&printed.stderr)
    );
    assert!(
        stdout
            .contains("CREATE OR REPLACE TRIGGER herald_track AFTER INSERT OR UPDATE OR DELETE ON"),
        "{stdout}"
    );
    let mut app = herald.app();
    assert_eq!(
        app.integer(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'Deal' AND column_name = 'area'",
            &[]
        ),
        0,
        "--print-triggers changes nothing"
    );
    let migrated = tokio::task::spawn_blocking(run(&[])).await.unwrap();
    assert!(
        migrated.status.success(),
        "{}{}",
        String::from_utf8_lossy(&migrated.stdout),
        String::from_utf8_lossy(&migrated.stderr)
    );
    app.execute(
        "INSERT INTO \"Deal\" (title, is_project, company_id) VALUES ('after the migration', 0, 1)",
        &[],
    );
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    let row = &got[0].json()["row"];
    assert_eq!(row["title"], "after the migration");
    assert_eq!(row["area"], "south");
    assert!(row.get("contact_id").is_none(), "{row}");
    herald.stop().await;
}

/// A tracked table rebuilt behind herald's back (created anew, copied, the old one dropped: its
/// trigger goes with it) is reported where the administrator looks, and tracking resumes, as on
/// SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_behind_heralds_back_is_reported_and_tracking_resumes() {
    let herald = on_postgres(|_| {}).await;
    let receiver = TestReceiver::start().await;
    herald
        .create_hook(json!({
            "target_url": receiver.url("/deals"),
            "company_id": 1,
            "events": ["Deal.create"],
        }))
        .await;
    let mut app = herald.app();
    app.batch(
        "BEGIN;
         CREATE TABLE \"Deal_new\" (LIKE \"Deal\" INCLUDING ALL);
         INSERT INTO \"Deal_new\" SELECT * FROM \"Deal\";
         DROP TABLE \"Deal\";
         ALTER TABLE \"Deal_new\" RENAME TO \"Deal\";
         COMMIT;",
    );
    let store = herald.store();
    let failure = eventually(Duration::from_secs(10), || {
        store
            .recent_script_failures(10)
            .unwrap()
            .into_iter()
            .find(|f| f.message.contains("without herald's tracking trigger"))
    })
    .await
    .expect("the lost trigger is reported");
    assert_eq!(failure.table.as_deref(), Some("Deal"));
    assert!(
        failure.message.contains("herald migrate"),
        "{}",
        failure.message
    );

    // Tracking resumes on the new table.
    app.execute(
        "INSERT INTO \"Deal\" (title, is_project, company_id) VALUES ('after the rebuild', 0, 1)",
        &[],
    );
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].json()["row"]["title"], "after the rebuild");
    herald.stop().await;
}
