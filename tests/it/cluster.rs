//! Several herald processes ("nodes") on one PostgreSQL database: one consumer of the change log,
//! chosen by the database and handed over when it stops or is cut off; every node delivering; the
//! per-hook limit held by all of them together; a node with another key refused; nodes whose
//! scripts differ shown; and nodes killed while the application writes. On the test PostgreSQL
//! server whatever `HERALD_TEST_DB` says (SQLite has one process per file).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use herald::database::Database;
use serde_json::Value;

use crate::crash::{free_addr, herald_command, kill9, wait_ready};
use crate::pg_server;
use crate::support::*;

fn node_config(url: &str, dir: &Path, scripts: &Path, name: &str) -> herald::Config {
    // `dir` holds the key file: the nodes of one database share it.
    let mut config = test_config_on(Database::parse(url).unwrap(), dir, scripts);
    config.node_name = Some(name.into());
    config
}

/// `/readyz` of the herald at `base`, whatever its status.
async fn readiness(client: &reqwest::Client, base: &str) -> Option<Value> {
    let response = client.get(format!("{base}/readyz")).send().await.ok()?;
    response.json().await.ok()
}

/// The name of the one node among `bases` that says it consumes the change log, once exactly one
/// does (within `timeout`).
async fn the_consumer(client: &reqwest::Client, bases: &[String], timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let mut consumers = Vec::new();
        for base in bases {
            if let Some(ready) = readiness(client, base).await {
                if ready["node"]["consumer"] == true {
                    consumers.push(ready["node"]["name"].as_str().unwrap().to_owned());
                }
            }
        }
        if consumers.len() == 1 {
            return consumers.remove(0);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no single consumer among {bases:?} within {timeout:?}");
}

fn titles(receiver: &TestReceiver) -> Vec<String> {
    receiver
        .received()
        .iter()
        .map(|r| r.json()["title"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn insert_deals(app: &mut AppDb, prefix: &str, count: usize) {
    app.batch("BEGIN");
    for i in 0..count {
        app.execute(
            "INSERT INTO \"Deal\" (title, is_project) VALUES (?1, 1)",
            &[Cell::Text(format!("{prefix} {i}"))],
        );
    }
    app.batch("COMMIT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_show_one_consumer_and_hand_the_change_log_over_when_it_stops() {
    let url = off_the_runtime(pg_server::fresh_database);
    let dir = tempfile::tempdir().unwrap();
    let scripts = demo_scripts(dir.path());
    // node-b's folder has one body script more: the nodes show that their scripts differ.
    let dir_b = tempfile::tempdir().unwrap();
    let scripts_b = demo_scripts(dir_b.path());
    std::fs::copy(
        scripts_b.join("GetWebhookResponseBody_NewOpportunity.rhai"),
        scripts_b.join("GetWebhookResponseBody_AlsoNewOpportunity.rhai"),
    )
    .unwrap();
    let a = TestHerald::start(node_config(&url, dir.path(), &scripts, "node-a")).await;
    let b = TestHerald::start(node_config(&url, dir.path(), &scripts_b, "node-b")).await;
    let bases = [a.url(""), b.url("")];
    let consumer = the_consumer(&a.client, &bases, Duration::from_secs(10)).await;

    // Every node lists both, the same consumer, and their two script sets.
    let ready_a = readiness(&a.client, &a.url("")).await.unwrap();
    let ready_b = readiness(&b.client, &b.url("")).await.unwrap();
    let (set_a, set_b) = (
        ready_a["node"]["script_set"].as_str().unwrap().to_owned(),
        ready_b["node"]["script_set"].as_str().unwrap().to_owned(),
    );
    assert_ne!(set_a, set_b, "different folders, different script sets");
    for (node, name) in [(&a, "node-a"), (&b, "node-b")] {
        let listed = nodes_until(node, Duration::from_secs(5), |listed| {
            let (up, consuming) = up_and_consuming(listed);
            up.len() == 2 && consuming == [consumer.clone()]
        })
        .await;
        assert_eq!(listed["this_node"], name, "{listed}");
        assert_eq!(listed["same_scripts"], false, "{listed}");
        let by_name: HashMap<&str, &Value> = listed["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| (n["name"].as_str().unwrap(), n))
            .collect();
        assert_eq!(by_name["node-a"]["script_set"], set_a.as_str());
        assert_eq!(by_name["node-b"]["script_set"], set_b.as_str());
    }
    let metrics = b
        .client
        .get(b.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!("herald_node_consumer{{node=\"{consumer}\"}} 1")),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "herald_this_node{{node=\"node-b\",script_set=\"{set_b}\"}} 1"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "herald_node_up{{node=\"node-a\",script_set=\"{set_a}\"}} 1"
        )),
        "{metrics}"
    );

    // Subscribed on one node, fired by the consumer, delivered once.
    let receiver = TestReceiver::start().await;
    b.subscribe("NewOpportunity", &receiver.url("/hook")).await;
    let mut app = a.app();
    insert_deals(&mut app, "before", 20);
    receiver.wait_for(20, Duration::from_secs(20)).await;

    // The consumer stops; the other takes the change log over within seconds.
    let (stopping, staying) = if consumer == "node-a" { (a, b) } else { (b, a) };
    let stopped_at = Instant::now();
    stopping.stop().await;
    let next = the_consumer(&staying.client, &[staying.url("")], Duration::from_secs(10)).await;
    let takeover = stopped_at.elapsed();
    eprintln!("cluster: {consumer} stopped, {next} consumes after {takeover:?}");
    assert_ne!(next, consumer);
    insert_deals(&mut app, "after", 20);
    receiver.wait_for(40, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut got = titles(&receiver);
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 40, "{got:?}");
    assert_eq!(receiver.received().len(), 40, "each delivered once");
    let counts = app.rows(
        "SELECT count(*), count(DISTINCT row_id) FROM herald_events",
        &[],
    );
    assert_eq!((counts[0][0].integer(), counts[0][1].integer()), (40, 40));
    assert_eq!(app.integer("SELECT count(*) FROM herald_changes", &[]), 0);
    // The stopped node is listed, no longer consuming.
    let listed = nodes_until(&staying, Duration::from_secs(5), |listed| {
        up_and_consuming(listed).1 == [next.clone()]
    })
    .await;
    assert_eq!(listed["nodes"].as_array().unwrap().len(), 2, "{listed}");
    staying.stop().await;
}

/// `GET /api/v1/nodes` of `herald` until `check` holds of it (within `timeout`).
async fn nodes_until(
    herald: &TestHerald,
    timeout: Duration,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let (status, body) = herald.get("/api/v1/nodes").await;
        if status == 200 && check(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "the nodes never showed it: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The names of the nodes the listing shows as up, and of those it shows consuming.
fn up_and_consuming(listed: &Value) -> (Vec<String>, Vec<String>) {
    let nodes = listed["nodes"].as_array().cloned().unwrap_or_default();
    let names = |keep: &dyn Fn(&Value) -> bool| -> Vec<String> {
        nodes
            .iter()
            .filter(|n| keep(n))
            .map(|n| n["name"].as_str().unwrap().to_owned())
            .collect()
    };
    (
        names(&|n| n["state"] == "up"),
        names(&|n| n["consumer"] == true),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_hook_limit_holds_for_three_nodes_together() {
    let url = off_the_runtime(pg_server::fresh_database);
    let dir = tempfile::tempdir().unwrap();
    let scripts = demo_scripts(dir.path());
    let mut nodes = Vec::new();
    for name in ["node-a", "node-b", "node-c"] {
        let mut config = node_config(&url, dir.path(), &scripts, name);
        config.delivery.max_in_flight_per_hook = 4;
        nodes.push(TestHerald::start(config).await);
    }
    let slow = TestReceiver::start().await;
    slow.answer_always(Answer {
        delay: Duration::from_millis(300),
        ..Answer::status(200)
    });
    nodes[1]
        .subscribe("NewOpportunity", &slow.url("/slow"))
        .await;
    let mut app = nodes[0].app();
    insert_deals(&mut app, "slow", 60);
    // 60 at 4 at a time and 0.3 s each: about 4.5 s.
    slow.wait_for(60, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let peak = slow.peak_in_flight();
    eprintln!("cluster: three nodes, max_in_flight_per_hook = 4, the target saw {peak} at once");
    assert!(peak <= 4, "the slow target saw {peak} requests at once");
    assert!(peak >= 2, "deliveries overlapped: {peak}");
    assert_eq!(slow.received().len(), 60, "each sent once");
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_secret_key_refuses_to_start() {
    let url = off_the_runtime(pg_server::fresh_database);
    let dir = tempfile::tempdir().unwrap();
    let scripts = demo_scripts(dir.path());
    let first = TestHerald::start(node_config(&url, dir.path(), &scripts, "node-a")).await;
    // No hook yet: the check value refuses the key all the same.
    let other = tempfile::tempdir().unwrap();
    let mut config = node_config(&url, other.path(), &scripts, "node-b");
    config.secret_key = Some(herald::store::Secrets::generate_key());
    let error =
        off_the_runtime(|| herald::server::prepare(&config).err()).expect("another key is refused");
    let message = format!("{error:#}");
    assert!(
        message.contains("secret key is not the database's"),
        "{message}"
    );
    assert!(!message.contains('\n'), "one line: {message}");
    // The first node is unharmed, and a node with the same key joins.
    let joining = TestHerald::start(node_config(&url, dir.path(), &scripts, "node-c")).await;
    let ready = readiness(&first.client, &first.url("")).await.unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    joining.stop().await;
    first.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_whose_lock_connection_is_cut_loses_the_role_and_nothing_is_lost_or_doubled() {
    let url = off_the_runtime(pg_server::fresh_database);
    let dir = tempfile::tempdir().unwrap();
    let scripts = demo_scripts(dir.path());
    let a = TestHerald::start(node_config(&url, dir.path(), &scripts, "node-a")).await;
    let b = TestHerald::start(node_config(&url, dir.path(), &scripts, "node-b")).await;
    let bases = [a.url(""), b.url("")];
    let first = the_consumer(&a.client, &bases, Duration::from_secs(10)).await;
    let receiver = TestReceiver::start().await;
    a.subscribe("NewOpportunity", &receiver.url("/hook")).await;
    let mut app = a.app();
    insert_deals(&mut app, "before", 10);
    receiver.wait_for(10, Duration::from_secs(20)).await;

    // The server ends the lock's connection (an administrator, a proxy, a network cut would).
    let database = Database::parse(&url).unwrap();
    let Database::Postgres(config) = &database else {
        unreachable!()
    };
    let name = config.config().unwrap().get_dbname().unwrap().to_owned();
    let holder = |name: String| {
        off_the_runtime(move || {
            pg_server::server()
                .connect("postgres")
                .query(
                    "SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                     WHERE l.locktype = 'advisory' AND l.granted AND a.datname = $1
                       AND a.application_name = 'herald consumer lock'",
                    &[&name],
                )
                .unwrap()
                .iter()
                .map(|r| r.get::<_, i32>(0))
                .collect::<Vec<i32>>()
        })
    };
    let holders = holder(name.clone());
    assert_eq!(holders.len(), 1, "one connection holds the consumer's lock");
    let cut_pid = holders[0];
    off_the_runtime(move || {
        pg_server::server()
            .connect("postgres")
            .execute("SELECT pg_terminate_backend($1)", &[&cut_pid])
            .unwrap()
    });
    let cut_at = Instant::now();
    // While the role changes hands (to either node), the application goes on writing.
    insert_deals(&mut app, "during", 10);
    // The role is taken again on a new connection, by whichever node asks first.
    let mut retaken = None;
    while cut_at.elapsed() < Duration::from_secs(15) {
        let now = holder(name.clone());
        if now.len() == 1 && now[0] != cut_pid {
            retaken = Some(cut_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let retaken = retaken.expect("the consumer's lock is taken again within 15 s");
    let next = the_consumer(&a.client, &bases, Duration::from_secs(10)).await;
    eprintln!("cluster: {first}'s lock cut, {next} holds it again after {retaken:?}");
    insert_deals(&mut app, "after", 10);
    receiver.wait_for(30, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut got = titles(&receiver);
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 30, "{got:?}");
    assert_eq!(receiver.received().len(), 30, "each delivered once");
    let counts = app.rows(
        "SELECT count(*), count(DISTINCT row_id) FROM herald_events",
        &[],
    );
    assert_eq!((counts[0][0].integer(), counts[0][1].integer()), (30, 30));
    for node in [&a, &b] {
        let ready =
            readiness_becomes(&node.client, &node.url(""), 200, Duration::from_secs(10)).await;
        assert!(ready.is_some(), "{} is ready again", node.url(""));
    }
    a.stop().await;
    b.stop().await;
}

fn spawn_node(url: &str, dir: &Path, scripts: &Path, name: &str, addr: SocketAddr) -> Child {
    herald_command(&Database::parse(url).unwrap(), dir, scripts, addr, None)
        .env("HERALD_NODE_NAME", name)
        .spawn()
        .unwrap()
}

struct RunningNode {
    name: &'static str,
    addr: SocketAddr,
    child: Child,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_lose_nothing_when_the_consumer_and_another_are_killed() {
    let changes: usize = std::env::var("HERALD_CRASH_TEST_CHANGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let url = off_the_runtime(pg_server::fresh_database);
    let dir = tempfile::tempdir().unwrap();
    let scripts = demo_scripts(dir.path());
    let receiver = TestReceiver::start().await;
    let client = reqwest::Client::new();
    let mut nodes = Vec::new();
    for name in ["node-a", "node-b", "node-c"] {
        let addr = free_addr();
        let child = spawn_node(&url, dir.path(), &scripts, name, addr);
        wait_ready(&client, addr).await;
        nodes.push(RunningNode { name, addr, child });
    }
    let response = client
        .post(format!("http://{}/EPT_WebhookSubscribe", nodes[2].addr))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"event": "NewOpportunity", "target_url": receiver.url("/nodes")}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    let writer_db = Database::parse(&url).unwrap();
    // Paced over about three seconds, so that the kills land while changes are being written.
    let pause = Duration::from_micros(3_000_000 * 10 / changes as u64);
    let writer = tokio::task::spawn_blocking(move || {
        let mut app = AppDb::open(&writer_db);
        let mut written = 0;
        while written < changes {
            app.batch("BEGIN");
            for _ in 0..10.min(changes - written) {
                app.execute(
                    "INSERT INTO \"Deal\" (title, is_project, company_id) VALUES ('node', 1, 1)",
                    &[],
                );
                written += 1;
            }
            app.batch("COMMIT");
            std::thread::sleep(pause);
        }
    });

    let bases = |nodes: &[RunningNode]| -> Vec<String> {
        nodes.iter().map(|n| format!("http://{}", n.addr)).collect()
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Kill the consumer, then another node, while the application writes.
    let consumer = the_consumer(&client, &bases(&nodes), Duration::from_secs(10)).await;
    let at = nodes.iter().position(|n| n.name == consumer).unwrap();
    let mut killed_consumer = nodes.remove(at);
    kill9(&mut killed_consumer.child);
    let killed_at = Instant::now();
    let next = the_consumer(&client, &bases(&nodes), Duration::from_secs(15)).await;
    let takeover = killed_at.elapsed();
    assert_ne!(next, consumer);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut killed_other = nodes.remove(0);
    kill9(&mut killed_other.child);
    // Both come back under their names.
    for mut node in [killed_consumer, killed_other] {
        node.addr = free_addr();
        node.child = spawn_node(&url, dir.path(), &scripts, node.name, node.addr);
        wait_ready(&client, node.addr).await;
        nodes.push(node);
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
    // A receipt comes before the attempt's record: let the nodes record the last ones before
    // they are killed.
    let mut app = AppDb::open(&Database::parse(&url).unwrap());
    let waiting_query = "SELECT count(*) FROM herald_deliveries WHERE status <> 'delivered'";
    let waiting = eventually(Duration::from_secs(30), || {
        let waiting = app.integer(waiting_query, &[]);
        (waiting == 0).then_some(waiting)
    })
    .await
    .unwrap_or_else(|| app.integer(waiting_query, &[]));
    let consumers_at_end = the_consumer(&client, &bases(&nodes), Duration::from_secs(10)).await;
    for node in &mut nodes {
        kill9(&mut node.child);
    }
    let (deliveries, ids) = received.unwrap_or_else(|| {
        panic!(
            "not every event reached the receiver within 2 minutes: {} deliveries",
            receiver.received().len()
        )
    });
    let counts = app.rows(
        "SELECT count(*), count(DISTINCT row_id) FROM herald_events WHERE trigger_name = 'NewOpportunity'",
        &[],
    );
    assert_eq!(
        counts[0][0].integer() as usize,
        changes,
        "one event per change"
    );
    assert_eq!(counts[0][1].integer() as usize, changes);
    assert_eq!(ids.len(), changes, "every event delivered");
    assert_eq!(waiting, 0, "every delivery delivered");
    let duplicates = deliveries - changes;
    eprintln!(
        "cluster crash test: {changes} changes, 3 nodes, the consumer ({consumer}) and one more \
         SIGKILLed and restarted; {next} took the change log over in {takeover:?}; {deliveries} \
         deliveries, {duplicates} duplicates; {consumers_at_end} consumes at the end"
    );
    // A duplicate is an attempt sent and not yet recorded at a kill: a node holds at most
    // `max_in_flight` (64) plus a record batch (256) of those.
    assert!(
        duplicates <= 2 * (64 + 256),
        "{duplicates} duplicates for 2 kills"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_deliveries_are_sent_by_another_long_before_their_leases_end() {
    let url = off_the_runtime(pg_server::fresh_database);
    let dir = tempfile::tempdir().unwrap();
    let scripts = demo_scripts(dir.path());
    let receiver = TestReceiver::start().await;
    // The first request hangs past the kill; what comes after is answered at once.
    receiver.queue(Answer {
        delay: Duration::from_secs(60),
        ..Answer::status(200)
    });
    let client = reqwest::Client::new();
    // A 30 s time-out leases a delivery for 70 s (two time-outs and a margin).
    let spawn = |name: &str, addr: SocketAddr| {
        let mut command = herald_command(
            &Database::parse(&url).unwrap(),
            dir.path(),
            &scripts,
            addr,
            None,
        );
        command
            .env("HERALD_NODE_NAME", name)
            .env("HERALD_DELIVERY_TIMEOUT", "30");
        command.spawn().unwrap()
    };
    let a_addr = free_addr();
    let mut a = spawn("node-a", a_addr);
    wait_ready(&client, a_addr).await;
    let response = client
        .post(format!("http://{a_addr}/EPT_WebhookSubscribe"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"event": "NewOpportunity", "target_url": receiver.url("/slow")}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let mut app = AppDb::open(&Database::parse(&url).unwrap());
    insert_deals(&mut app, "leased", 1);
    receiver.wait_for(1, Duration::from_secs(15)).await;
    let leased_by_a = app.integer(
        "SELECT count(*) FROM herald_deliveries WHERE status = 'delivering'",
        &[],
    );
    assert_eq!(leased_by_a, 1, "node-a holds the delivery while it waits");

    let b_addr = free_addr();
    let mut b = spawn("node-b", b_addr);
    wait_ready(&client, b_addr).await;
    kill9(&mut a);
    let killed_at = Instant::now();
    let again = eventually(Duration::from_secs(25), || {
        let received = receiver.received();
        (received.len() >= 2).then_some(received)
    })
    .await;
    let resent_after = killed_at.elapsed();
    kill9(&mut b);
    let again = again.expect(
        "the delivery node-a held was not sent again within 25 s of its death (its lease runs 70 s)",
    );
    assert_eq!(again[0].json()["title"], again[1].json()["title"]);
    eprintln!("a dead node's delivery was sent again {resent_after:?} after the kill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_on_one_node_works_on_another_and_signing_out_ends_it_on_both() {
    use crate::admin_pages::{csrf_of, page, post_form, session_cookie};
    let url = off_the_runtime(pg_server::fresh_database);
    let dir = tempfile::tempdir().unwrap();
    let scripts = demo_scripts(dir.path());
    let a = TestHerald::start(node_config(&url, dir.path(), &scripts, "node-a")).await;
    let b = TestHerald::start(node_config(&url, dir.path(), &scripts, "node-b")).await;

    let cookie = session_cookie(&a).await;
    let (status, on_b) = page(&b, &cookie, "/admin").await;
    assert_eq!(status, 200, "node-b knows node-a's session: {on_b}");
    // A form posted to node-b with the CSRF token node-a's page carries; its banner (with the
    // secret shown once) read on node-a after the redirect.
    let (_, on_a) = page(&a, &cookie, "/admin").await;
    let csrf = csrf_of(&on_a);
    assert_eq!(csrf, csrf_of(&on_b), "one session, one CSRF token");
    let created = post_form(
        &b,
        &cookie,
        &csrf,
        "/admin/hooks",
        &[
            ("scope", "company:1"),
            ("target_url", "http://127.0.0.1:9/hook"),
            ("authorization", ""),
            ("description", ""),
        ],
    )
    .await;
    assert_eq!(created.status(), 303);
    let to = created.headers()["location"].to_str().unwrap().to_owned();
    let (status, hook_page) = page(&a, &cookie, &to).await;
    assert_eq!(status, 200);
    assert!(
        hook_page.contains("id=\"new-secret\">whsec_"),
        "the banner with the secret, on the other node: {hook_page}"
    );
    let (_, again) = page(&b, &cookie, &to).await;
    assert!(!again.contains("new-secret"), "shown once, on any node");

    // Signing out on node-b ends the session on node-a too.
    let out = post_form(&b, &cookie, &csrf, "/admin/logout", &[]).await;
    assert_eq!(out.status(), 303);
    let (status, _) = page(&a, &cookie, "/admin").await;
    assert_eq!(
        status, 303,
        "node-a sends the signed-out browser to sign in"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tokens_count_on_every_node_together() {
    let url = off_the_runtime(pg_server::fresh_database);
    let dir = tempfile::tempdir().unwrap();
    let scripts = demo_scripts(dir.path());
    let a = TestHerald::start(node_config(&url, dir.path(), &scripts, "node-a")).await;
    let b = TestHerald::start(node_config(&url, dir.path(), &scripts, "node-b")).await;
    let guess = |node: &TestHerald, token: &str| {
        node.client
            .get(node.url("/api/v1/hooks"))
            .bearer_auth(token)
            .send()
    };
    // The allowance (10 at once) spent half on each node.
    for i in 0..10 {
        let node = if i % 2 == 0 { &a } else { &b };
        let response = guess(node, &format!("guess-{i}")).await.unwrap();
        assert_eq!(response.status(), 401, "guess {i}");
    }
    for node in [&a, &b] {
        let response = guess(node, "one-more").await.unwrap();
        assert_eq!(response.status(), 429, "blocked on every node");
        // While blocked, even the right token is refused: nothing is learnt by guessing.
        let response = guess(node, TOKEN).await.unwrap();
        assert_eq!(response.status(), 429);
        assert!(response.headers().contains_key("retry-after"));
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_cut_off_from_the_database_go_not_ready_give_the_role_up_and_come_back() {
    let url = off_the_runtime(pg_server::fresh_database);
    let dir = tempfile::tempdir().unwrap();
    let scripts = demo_scripts(dir.path());
    let a = TestHerald::start(node_config(&url, dir.path(), &scripts, "node-a")).await;
    let b = TestHerald::start(node_config(&url, dir.path(), &scripts, "node-b")).await;
    let bases = [a.url(""), b.url("")];
    let first = the_consumer(&a.client, &bases, Duration::from_secs(10)).await;
    let receiver = TestReceiver::start().await;
    a.subscribe("NewOpportunity", &receiver.url("/hook")).await;
    let mut app = a.app();
    insert_deals(&mut app, "before", 10);
    receiver.wait_for(10, Duration::from_secs(20)).await;

    // Changes written just before the cut are in flight when every connection of the database
    // ends, and no new one is let in.
    insert_deals(&mut app, "during", 10);
    drop(app);
    let database = Database::parse(&url).unwrap();
    let Database::Postgres(config) = &database else {
        unreachable!()
    };
    let name = config.config().unwrap().get_dbname().unwrap().to_owned();
    let set_allowed = |name: String, allowed: bool| {
        off_the_runtime(move || {
            let mut admin = pg_server::server().connect("postgres");
            admin
                .batch_execute(&format!(
                    "ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS {allowed}"
                ))
                .unwrap();
            if !allowed {
                admin
                    .execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                        &[&name],
                    )
                    .unwrap();
            }
        })
    };
    set_allowed(name.clone(), false);
    for node in [&a, &b] {
        let ready =
            readiness_becomes(&node.client, &node.url(""), 503, Duration::from_secs(15)).await;
        assert!(ready.is_some(), "{} goes not-ready", node.url(""));
    }
    // The consumer notices at its next look (after at most one back-off, 5 s).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut consumers = bases.len();
    while Instant::now() < deadline && consumers > 0 {
        consumers = 0;
        for base in &bases {
            let ready = readiness(&a.client, base).await.unwrap_or(Value::Null);
            if ready["node"]["consumer"] != false {
                consumers += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(consumers, 0, "no node keeps the role without the database");
    set_allowed(name.clone(), true);
    for node in [&a, &b] {
        let ready =
            readiness_becomes(&node.client, &node.url(""), 200, Duration::from_secs(20)).await;
        if ready.is_none() {
            let now = readiness(&node.client, &node.url("")).await;
            panic!("{} is ready again; it says {now:?}", node.url(""));
        }
    }
    let next = the_consumer(&a.client, &bases, Duration::from_secs(10)).await;
    let mut app = a.app();
    insert_deals(&mut app, "after", 10);
    let received = eventually(Duration::from_secs(30), || {
        let mut got = titles(&receiver);
        got.sort();
        got.dedup();
        (got.len() >= 30).then_some(got)
    })
    .await;
    let deliveries = receiver.received().len();
    a.stop().await;
    b.stop().await;
    let got = received.unwrap_or_else(|| panic!("not all 30 delivered: {:?}", titles(&receiver)));
    assert_eq!(got.len(), 30, "{got:?}");
    let counts = app.rows(
        "SELECT count(*), count(DISTINCT row_id) FROM herald_events",
        &[],
    );
    assert_eq!(
        (counts[0][0].integer(), counts[0][1].integer()),
        (30, 30),
        "each change's event stored once"
    );
    // A delivery whose attempt was made but not recorded at the cut is sent again: no more than
    // the ten in flight.
    let duplicates = deliveries - 30;
    assert!(duplicates <= 10, "{duplicates} duplicates");
    eprintln!(
        "cluster: every connection cut, {first} consumed before and {next} after; \
         {duplicates} duplicate deliveries"
    );
}

/// A process's leases go back to the outbox at the next look once it is gone, on every hook it
/// held, while those of a process still there stay, even on hooks between its in the leases'
/// order.
#[test]
fn the_leases_of_a_process_that_is_gone_go_back_and_a_live_ones_stay() {
    use herald::store::{Claim, FailurePolicy, NewEvent, NewHook, Scope, Store};

    let db = Database::parse(&pg_server::fresh_database()).unwrap();
    let open = || {
        Store::open_database(
            &db,
            &herald::config::PostgresSettings::default(),
            herald::store::Secrets::none(),
            Duration::from_secs(2),
        )
        .unwrap()
    };
    let (looker, gone, live) = (open(), open(), open());
    let mut hooks: Vec<String> = (0..6)
        .map(|i| {
            looker
                .create_hook(NewHook {
                    target_url: format!("https://r.example/{i}"),
                    secret: "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ=".into(),
                    authorization: None,
                    description: String::new(),
                    origin: herald::store::HookOrigin::Admin,
                    scope: Scope::Everything,
                    enabled: true,
                    events: vec!["NewOpportunity".into()],
                    made_by: None,
                    filter: None,
                    rate_limit_per_second: None,
                })
                .unwrap()
                .id
        })
        .collect();
    hooks.sort();
    looker
        .insert_events(&[NewEvent {
            id: herald::ids::event_id(),
            trigger: "NewOpportunity".into(),
            row_id: Some(1),
            payload: "{\"id\":1}".into(),
            change_id: None,
            script_hash: None,
            resource_name: Some("Deal".into()),
            event_type: Some("create".into()),
            company_id: None,
            project_id: None,
            judgements: Vec::new(),
        }])
        .unwrap();
    // In hook order the holders take turns: gone, live, gone, live...
    let claim_every_other = |store: &Store, first: usize| -> Vec<String> {
        store.hold_presence().unwrap();
        let capacity = herald::delivery::Capacity::new(1, usize::MAX);
        capacity.open();
        for hook in hooks.iter().skip(1 - first).step_by(2) {
            capacity.set_room(hook, 0);
        }
        let claim = Claim {
            now: herald::clock::now_ms(),
            lease_ms: 600_000,
            limit: 100,
            capacity: &capacity,
        };
        let (outcome, _) = store
            .record_and_claim(&[], &[], &FailurePolicy::default(), &claim)
            .unwrap();
        let mut taken: Vec<String> = outcome.deliveries.into_iter().map(|d| d.hook_id).collect();
        taken.sort();
        taken
    };
    let held_by_gone: Vec<String> = hooks.iter().step_by(2).cloned().collect();
    let held_by_live: Vec<String> = hooks.iter().skip(1).step_by(2).cloned().collect();
    assert_eq!(claim_every_other(&gone, 0), held_by_gone);
    assert_eq!(claim_every_other(&live, 1), held_by_live);
    looker.hold_presence().unwrap();
    assert_eq!(
        looker.release_leases_of_departed().unwrap(),
        0,
        "both holders are there"
    );

    drop(gone);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut released = 0;
    while released == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        released = looker.release_leases_of_departed().unwrap();
    }
    assert_eq!(released, 3, "the gone process's lease on each of its hooks");
    let mut due_again: Vec<String> = looker
        .claim_due(herald::clock::now_ms(), 60_000, 100, &HashMap::new(), 1)
        .unwrap()
        .deliveries
        .into_iter()
        .map(|d| d.hook_id)
        .collect();
    due_again.sort();
    assert_eq!(due_again, held_by_gone, "the live process's leases stay");
    assert_eq!(looker.release_leases_of_departed().unwrap(), 0);
}
