//! The real binary's end of life. Crashes: killed with SIGKILL at random moments while the
//! application writes, then restarted; every change that fires an event must fire it exactly once,
//! and every event must reach the receiver at least once. Shutdown: SIGTERM lets the attempt in
//! flight finish and records it.
//!
//! The README's test command writes 2,000 changes; `HERALD_CRASH_TEST_CHANGES=20000 cargo test
//! crash` runs the full size.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use herald::database::Database;
use rand::Rng;

use crate::support::*;

fn spawn_herald(db: &Database, dir: &Path, scripts: &Path, addr: SocketAddr) -> Child {
    spawn_herald_logging(db, dir, scripts, addr, None)
}

/// With `log`, herald writes JSON log lines there, herald's own at debug level.
fn spawn_herald_logging(
    db: &Database,
    dir: &Path,
    scripts: &Path,
    addr: SocketAddr,
    log: Option<&Path>,
) -> Child {
    herald_command(db, dir, scripts, addr, log).spawn().unwrap()
}

/// `herald serve` on `db`, in `dir` (where its generated key lands on PostgreSQL).
pub(crate) fn herald_command(
    db: &Database,
    dir: &Path,
    scripts: &Path,
    addr: SocketAddr,
    log: Option<&Path>,
) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    command
        .current_dir(dir)
        .arg("serve")
        .arg("--db")
        .arg(db.as_argument())
        .arg("--scripts")
        .arg(scripts)
        .arg("--listen")
        .arg(addr.to_string())
        .env("HERALD_API_TOKEN", TOKEN)
        .env("HERALD_ALLOW_TARGETS", "127.0.0.0/8")
        .env(
            "HERALD_RETRY_SCHEDULE",
            "0.2,0.2,0.2,0.2,0.2,0.2,0.2,0.2,0.2,0.2",
        )
        .env("HERALD_DELIVERY_TIMEOUT", "2")
        .env_remove("HERALD_CONFIG")
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(log) = log {
        command
            .env("RUST_LOG", "info,herald=debug")
            .env("HERALD_LOG_FORMAT", "json")
            .stderr(std::fs::File::create(log).unwrap());
    }
    command
}

pub(crate) fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

pub(crate) async fn wait_ready(client: &reqwest::Client, addr: SocketAddr) {
    for _ in 0..400 {
        if let Ok(r) = client.get(format!("http://{addr}/readyz")).send().await {
            if r.status() == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("herald did not become ready at {addr}");
}

pub(crate) fn kill9(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_nothing_and_fires_each_change_once() {
    let changes: usize = std::env::var("HERALD_CRASH_TEST_CHANGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let dir = tempfile::tempdir().unwrap();
    let scripts = demo_scripts(dir.path());
    let db = test_database(dir.path());
    let receiver = TestReceiver::start().await;
    let client = reqwest::Client::new();

    let mut addr = free_addr();
    let mut herald = spawn_herald(&db, dir.path(), &scripts, addr);
    wait_ready(&client, addr).await;
    let response = client
        .post(format!("http://{addr}/EPT_WebhookSubscribe"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"event": "NewOpportunity", "target_url": receiver.url("/crash")}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    let writer_db = db.clone();
    // Paced over about three seconds, so that the kills land while changes are being written.
    let pause = Duration::from_micros(3_000_000 * 10 / changes as u64);
    let writer = tokio::task::spawn_blocking(move || {
        let mut app = AppDb::open(&writer_db);
        let mut written = 0;
        while written < changes {
            app.batch("BEGIN");
            for _ in 0..10.min(changes - written) {
                app.execute(
                    "INSERT INTO \"Deal\" (title, is_project, company_id) VALUES ('crash', 1, 1)",
                    &[],
                );
                written += 1;
            }
            app.batch("COMMIT");
            std::thread::sleep(pause);
        }
    });

    let mut kills = 0;
    while kills < 5 {
        let pause = rand::rng().random_range(100..500);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        kill9(&mut herald);
        kills += 1;
        addr = free_addr();
        herald = spawn_herald(&db, dir.path(), &scripts, addr);
        wait_ready(&client, addr).await;
    }
    writer.await.unwrap();

    let received = eventually(Duration::from_secs(120), || {
        let got = receiver.received();
        let mut ids: HashMap<i64, usize> = HashMap::new();
        for r in &got {
            *ids.entry(r.json()["id"].as_i64().unwrap()).or_default() += 1;
        }
        (ids.len() >= changes).then_some((got.len(), ids))
    })
    .await;
    kill9(&mut herald);
    let (deliveries, ids) = received.unwrap_or_else(|| {
        panic!(
            "not every event reached the receiver within 2 minutes: {} deliveries",
            receiver.received().len()
        )
    });

    // Exactly once from change to event: one stored event per inserted deal.
    let mut conn = AppDb::open(&db);
    let counts = conn.rows(
        "SELECT count(*), count(DISTINCT row_id) FROM herald_events WHERE trigger_name = 'NewOpportunity'",
        &[],
    );
    let (events, distinct) = (counts[0][0].integer(), counts[0][1].integer());
    let seed_deals = conn.integer("SELECT count(*) FROM \"Deal\" WHERE title != 'crash'", &[]);
    assert_eq!(
        seed_deals, 2,
        "the demo's own deals were there before tracking"
    );
    assert_eq!(events as usize, changes, "one event per change, none twice");
    assert_eq!(distinct as usize, changes);
    assert_eq!(ids.len(), changes, "every event delivered at least once");
    let duplicates = deliveries - changes;
    eprintln!(
        "crash test: {changes} changes, 5 SIGKILLs, {deliveries} deliveries, {duplicates} duplicates \
         (at least once: only attempts in flight at a kill are sent again)"
    );
    // A duplicate is an attempt sent and not yet recorded at a kill: a process holds at most
    // `max_in_flight` (64) plus a record batch (256) of those.
    assert!(
        duplicates <= 5 * (64 + 256),
        "{duplicates} duplicates for 5 kills"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_attempt_in_flight_finish_records_it_and_exits_0() {
    // Also checks that the log lines about an event name it, and the delivery's webhook-id.
    let dir = tempfile::tempdir().unwrap();
    let scripts = demo_scripts(dir.path());
    let receiver = TestReceiver::start().await;
    receiver.queue(Answer {
        status: 200,
        headers: Vec::new(),
        body: "took a while".into(),
        delay: Duration::from_millis(800),
    });
    let client = reqwest::Client::new();
    let addr = free_addr();
    let log = dir.path().join("herald.log");
    let db = test_database(dir.path());
    let mut herald = spawn_herald_logging(&db, dir.path(), &scripts, addr, Some(&log));
    wait_ready(&client, addr).await;
    let response = client
        .post(format!("http://{addr}/EPT_WebhookSubscribe"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"event": "NewOpportunity", "target_url": receiver.url("/slow")}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    AppDb::open(&db).execute(
        "INSERT INTO \"Deal\" (title, is_project, company_id) VALUES ('in flight', 1, 1)",
        &[],
    );
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    let message_id = got[0].header("webhook-id").to_owned();

    // The receiver is still answering: stop herald now.
    let _ = Command::new("kill")
        .args(["-TERM", &herald.id().to_string()])
        .status();
    let status = tokio::task::spawn_blocking(move || herald.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "herald exited with {status}");

    let mut config = herald::Config::with_paths(db.clone(), &scripts);
    config.secret_key_file = Some(db.sqlite_path().map_or_else(
        || dir.path().join("herald.secret-key"),
        |_| db.companion_file("secret-key"),
    ));
    let store = TestStore(off_the_runtime(|| {
        herald::server::open_store(&config).unwrap()
    }));
    assert_eq!(
        store.delivery_status(&message_id).unwrap(),
        Some(herald::store::DeliveryStatus::Delivered),
        "the attempt that was in flight is recorded"
    );
    let attempts = store.attempts_of(&message_id).unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].response_body.as_deref(), Some("took a while"));
    assert!(
        attempts[0].duration_ms >= 700,
        "{}",
        attempts[0].duration_ms
    );

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let line = |message: &str| {
        lines
            .iter()
            .find(|l| l["message"] == message)
            .unwrap_or_else(|| panic!("no '{message}' line in {text}"))
            .clone()
    };
    let fired = line("event fired");
    let finished = line("attempt finished");
    assert_eq!(fired["event"], "NewOpportunity", "{fired}");
    assert!(
        fired["event_id"].as_str().unwrap().starts_with("evt_"),
        "{fired}"
    );
    assert_eq!(finished["event_id"], fired["event_id"], "{finished}");
    assert_eq!(finished["webhook_id"], message_id.as_str(), "{finished}");
    assert_eq!(finished["outcome"], "success", "{finished}");
}
