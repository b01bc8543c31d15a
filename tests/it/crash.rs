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

use rand::Rng;

use crate::support::*;

fn spawn_herald(dir: &Path, scripts: &Path, addr: SocketAddr) -> Child {
    spawn_herald_logging(dir, scripts, addr, None)
}

/// With `log`, herald writes JSON log lines there, herald's own at debug level.
fn spawn_herald_logging(dir: &Path, scripts: &Path, addr: SocketAddr, log: Option<&Path>) -> Child {
    herald_command(dir, scripts, addr, log).spawn().unwrap()
}

fn herald_command(dir: &Path, scripts: &Path, addr: SocketAddr, log: Option<&Path>) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    command
        .arg("serve")
        .arg("--db")
        .arg(dir.join("herald.db"))
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

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

async fn wait_ready(client: &reqwest::Client, addr: SocketAddr) {
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

fn kill9(child: &mut Child) {
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
    let receiver = TestReceiver::start().await;
    let client = reqwest::Client::new();

    let mut addr = free_addr();
    let mut herald = spawn_herald(dir.path(), &scripts, addr);
    wait_ready(&client, addr).await;
    let response = client
        .post(format!("http://{addr}/EPT_WebhookSubscribe"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"event": "NewOpportunity", "target_url": receiver.url("/crash")}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    let db = dir.path().join("herald.db");
    let writer_db = db.clone();
    // Paced over about three seconds, so that the kills land while changes are being written.
    let pause = Duration::from_micros(3_000_000 * 10 / changes as u64);
    let writer = tokio::task::spawn_blocking(move || {
        let mut app = rusqlite::Connection::open(writer_db).unwrap();
        app.busy_timeout(Duration::from_secs(30)).unwrap();
        let mut written = 0;
        while written < changes {
            let tx = app.transaction().unwrap();
            for _ in 0..10.min(changes - written) {
                tx.execute(
                    "INSERT INTO Deal (title, is_project, company_id) VALUES ('crash', 1, 1)",
                    [],
                )
                .unwrap();
                written += 1;
            }
            tx.commit().unwrap();
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
        herald = spawn_herald(dir.path(), &scripts, addr);
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
    let conn = rusqlite::Connection::open(&db).unwrap();
    let (events, distinct): (i64, i64) = conn
        .query_row(
            "SELECT count(*), count(DISTINCT row_id) FROM herald_events WHERE trigger_name = 'NewOpportunity'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let seed_deals: i64 = conn
        .query_row(
            "SELECT count(*) FROM Deal WHERE title != 'crash'",
            [],
            |r| r.get(0),
        )
        .unwrap();
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
    // A duplicate is an attempt in flight at a kill: at most what one process has in flight.
    assert!(duplicates <= 5 * 64, "{duplicates} duplicates for 5 kills");
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
    let mut herald = spawn_herald_logging(dir.path(), &scripts, addr, Some(&log));
    wait_ready(&client, addr).await;
    let response = client
        .post(format!("http://{addr}/EPT_WebhookSubscribe"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"event": "NewOpportunity", "target_url": receiver.url("/slow")}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let db = dir.path().join("herald.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute(
            "INSERT INTO Deal (title, is_project, company_id) VALUES ('in flight', 1, 1)",
            [],
        )
        .unwrap();
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

    let store = herald::store::Store::open(&db).unwrap();
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
    let mut command = herald_command(dir.path(), &scripts, addr, None);
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
    let app = rusqlite::Connection::open(dir.path().join("herald.db")).unwrap();
    let insert = |title: &str| {
        app.execute(
            "INSERT INTO Deal (title, is_project, company_id) VALUES (?1, 1, 1)",
            [title],
        )
        .unwrap();
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
