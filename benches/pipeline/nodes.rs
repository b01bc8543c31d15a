//! `--nodes N` (PostgreSQL): the pipeline with one herald process and with N on one database, in
//! the same run, and the failover: the consuming node killed while the application writes.
//!
//! On a 2-core machine N nodes share the cores that one node and the server already use, so they
//! cannot deliver faster; what the scenario shows is what the cluster costs and how long a
//! takeover takes.

use std::time::{Duration, Instant};

use herald::database::Database;
use serde_json::Value;

use super::{demo_scripts, percentile, App, Backend, Herald, Receiver, Row, Sizes};

/// N heralds on one fresh database, sharing the folder (and so the key file).
async fn cluster(backend: &Backend, dir: &std::path::Path, count: usize) -> Vec<Herald> {
    let db = backend.fresh(dir);
    let mut nodes = Vec::new();
    for _ in 0..count {
        nodes.push(Herald::start(dir, &db).await);
    }
    nodes
}

/// Events per second from the first insert to the last receipt, `n` inserts in transactions of 100.
async fn throughput_of(db: &Database, receiver: &Receiver, n: usize) -> f64 {
    receiver.reset(false);
    let db = db.clone();
    let start = Instant::now();
    let writer = tokio::task::spawn_blocking(move || App::open(&db).insert_deals(n));
    let done = receiver.wait_for(n as u64, Duration::from_secs(1800)).await;
    writer.await.unwrap();
    n as f64 / (done - start).as_secs_f64()
}

/// Inserts at `rate` a second for `secs` seconds, one per transaction, on a thread; each insert's
/// id and commit time.
fn paced_inserts(
    db: &Database,
    rate: u64,
    secs: u64,
) -> tokio::task::JoinHandle<Vec<(i64, Instant)>> {
    let db = db.clone();
    tokio::task::spawn_blocking(move || {
        let total = (rate * secs) as usize;
        let mut app = App::open(&db);
        let mut commits = Vec::with_capacity(total);
        let start = Instant::now();
        for i in 0..total {
            let due = start + Duration::from_nanos(i as u64 * 1_000_000_000 / rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let id = app.insert_deal_alone();
            commits.push((id, Instant::now()));
        }
        commits
    })
}

/// Commit-to-receipt latencies in ms of `commits`, sorted, once all arrived.
async fn latencies_of(receiver: &Receiver, commits: &[(i64, Instant)]) -> Vec<(Instant, f64)> {
    receiver
        .wait_for(commits.len() as u64, Duration::from_secs(600))
        .await;
    let arrivals = receiver.seen.arrivals.lock().unwrap().take().unwrap();
    commits
        .iter()
        .filter_map(|(id, at)| {
            arrivals
                .get(id)
                .map(|r| (*at, (*r - *at).as_secs_f64() * 1000.0))
        })
        .collect()
}

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(|a, b| a.total_cmp(b));
    values
}

/// The node that says it consumes the change log, if one does now.
async fn consumer_of(nodes: &[Herald]) -> Option<usize> {
    for (i, node) in nodes.iter().enumerate() {
        let ready: Option<Value> = match node.client.get(node.url("/readyz")).send().await {
            Ok(r) => r.json().await.ok(),
            Err(_) => None,
        };
        if ready.is_some_and(|r| r["node"]["consumer"] == true) {
            return Some(i);
        }
    }
    None
}

pub async fn nodes(
    backend: &Backend,
    sizes: &Sizes,
    receiver: &Receiver,
    count: usize,
    rows: &mut Vec<Row>,
) {
    if !matches!(backend, Backend::Postgres(_)) {
        eprintln!(
            "--nodes: several nodes share a PostgreSQL database; run with --backend postgres"
        );
        return;
    }
    let mut rates = Vec::new();
    let mut p99s = Vec::new();
    for n in [1, count] {
        let dir = tempfile::tempdir().unwrap();
        demo_scripts(dir.path());
        let nodes = cluster(backend, dir.path(), n).await;
        nodes[0]
            .subscribe("NewOpportunity", &receiver.url("/nodes"))
            .await;
        let db = nodes[0].db.clone();
        rates.push(throughput_of(&db, receiver, sizes.throughput_events).await);
        for node in nodes {
            node.stop();
        }
        // Latency on a fresh database: after the throughput run's 100,000 events its tables are
        // being vacuumed, which the single-node latency scenario does not pay either.
        let dir = tempfile::tempdir().unwrap();
        demo_scripts(dir.path());
        let nodes = cluster(backend, dir.path(), n).await;
        nodes[0]
            .subscribe("NewOpportunity", &receiver.url("/nodes"))
            .await;
        let db = nodes[0].db.clone();
        receiver.reset(true);
        let commits = paced_inserts(&db, sizes.latency_rate, sizes.latency_secs)
            .await
            .unwrap();
        let latencies = sorted(
            latencies_of(receiver, &commits)
                .await
                .into_iter()
                .map(|(_, ms)| ms)
                .collect(),
        );
        p99s.push(percentile(&latencies, 0.99));
        for node in nodes {
            node.stop();
        }
    }
    rows.push(Row {
        scenario: "nodes",
        figure: format!(
            "events/s with {count} nodes, {} inserts",
            sizes.throughput_events
        ),
        value: rates[1],
        unit: "events/s",
        baseline: "events/s with 1 node, same run".into(),
        baseline_value: rates[0],
        ratio: rates[1] / rates[0],
        target: "",
    });
    rows.push(Row {
        scenario: "nodes",
        figure: format!(
            "p99 ms with {count} nodes at {}/s for {} s",
            sizes.latency_rate, sizes.latency_secs
        ),
        value: p99s[1],
        unit: "ms",
        baseline: "p99 ms with 1 node, same run".into(),
        baseline_value: p99s[0],
        ratio: p99s[1] / p99s[0],
        target: "",
    });

    // Failover: the consumer killed (SIGKILL) two seconds into a paced stream.
    let dir = tempfile::tempdir().unwrap();
    demo_scripts(dir.path());
    let mut nodes = cluster(backend, dir.path(), count).await;
    nodes[0]
        .subscribe("NewOpportunity", &receiver.url("/failover"))
        .await;
    let db = nodes[0].db.clone();
    let mut consumer = None;
    for _ in 0..200 {
        consumer = consumer_of(&nodes).await;
        if consumer.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let consumer = consumer.expect("a node consumes");
    receiver.reset(true);
    let rate = sizes.latency_rate.min(500);
    let secs = 6;
    let writing = paced_inserts(&db, rate, secs);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut killed = nodes.remove(consumer);
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &killed.child.id().to_string()])
        .status();
    let _ = killed.child.wait();
    let killed_at = Instant::now();
    let mut takeover = None;
    while killed_at.elapsed() < Duration::from_secs(30) {
        if consumer_of(&nodes).await.is_some() {
            takeover = Some(killed_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let takeover = takeover.expect("another node takes over within 30 s");
    let commits = writing.await.unwrap();
    let timeline = latencies_of(receiver, &commits).await;
    let steady = sorted(
        timeline
            .iter()
            .filter(|(at, _)| *at < killed_at - Duration::from_millis(500))
            .map(|(_, ms)| *ms)
            .collect(),
    );
    let worst_after = timeline
        .iter()
        .filter(|(at, _)| *at >= killed_at - Duration::from_millis(100))
        .map(|(_, ms)| *ms)
        .fold(0.0, f64::max);
    let steady_p50 = percentile(&steady, 0.5);
    rows.push(Row {
        scenario: "nodes",
        figure: format!("ms until another of {count} nodes consumes, consumer SIGKILLed"),
        value: takeover.as_secs_f64() * 1000.0,
        unit: "ms",
        baseline: "p50 latency before the kill".into(),
        baseline_value: steady_p50,
        ratio: takeover.as_secs_f64() * 1000.0 / steady_p50,
        target: "a few seconds",
    });
    rows.push(Row {
        scenario: "nodes",
        figure: format!("worst latency ms of changes committed across the kill, {rate}/s"),
        value: worst_after,
        unit: "ms",
        baseline: "p50 latency before the kill".into(),
        baseline_value: steady_p50,
        ratio: worst_after / steady_p50,
        target: "",
    });
    for node in nodes {
        node.stop();
    }
}
