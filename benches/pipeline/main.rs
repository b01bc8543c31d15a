//! The pipeline benchmark: `cargo bench --bench pipeline` (full sizes) or
//! `cargo bench --bench pipeline -- --quick` (a hundredth of them); `-- --backend postgres` runs the
//! same scenarios on PostgreSQL (see `db.rs`), and `-- --backend postgres --nodes 3` adds the
//! scenario of several herald processes on one database (see `nodes.rs`).
//!
//! Every scenario runs the real `herald` binary on a fresh database with the demo scripts, written
//! by a separate connection, delivering to a receiver on loopback that answers 200 at once.
//! Each figure is printed beside a baseline measured in the same run, as a ratio, because the
//! machines are shared and absolute numbers mean little. The table also goes to
//! `target/bench/pipeline.json`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::Router;
use herald::database::Database;
use herald::store::{HookOrigin, NewEvent, NewHook, Scope, Store};
use serde_json::{json, Value};

mod db;
mod nodes;
use db::{App, Backend};

const TOKEN: &str = "bench-token";

/// Sizes of one run.
struct Sizes {
    throughput_events: usize,
    latency_rate: u64,
    latency_secs: u64,
    fanout_events: usize,
    fanout_hooks: usize,
    backlog_small: usize,
    backlog_large: usize,
    renders: usize,
    inserts: usize,
}

impl Sizes {
    fn full() -> Sizes {
        Sizes {
            throughput_events: 100_000,
            latency_rate: 1_000,
            latency_secs: 30,
            fanout_events: 2_000,
            fanout_hooks: 100,
            backlog_small: 10_000,
            backlog_large: 1_000_000,
            renders: 20_000,
            inserts: 20_000,
        }
    }

    fn quick() -> Sizes {
        Sizes {
            throughput_events: 2_000,
            latency_rate: 500,
            latency_secs: 3,
            fanout_events: 200,
            fanout_hooks: 20,
            backlog_small: 1_000,
            backlog_large: 10_000,
            renders: 2_000,
            inserts: 2_000,
        }
    }
}

/// What the receiver saw: a count, and for latency runs the arrival time of each payload id.
#[derive(Default)]
struct Seen {
    count: AtomicU64,
    arrivals: Mutex<Option<HashMap<i64, Instant>>>,
}

struct Receiver {
    addr: SocketAddr,
    seen: Arc<Seen>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let state = seen.clone();
        let app = Router::new().fallback(move |body: Bytes| {
            let seen = state.clone();
            async move {
                let now = Instant::now();
                if let Some(arrivals) = seen.arrivals.lock().unwrap().as_mut() {
                    if let Ok(payload) = serde_json::from_slice::<Value>(&body) {
                        if let Some(id) = payload["id"].as_i64() {
                            arrivals.insert(id, now);
                        }
                    }
                }
                seen.count.fetch_add(1, Ordering::Relaxed);
                ""
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { addr, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn count(&self) -> u64 {
        self.seen.count.load(Ordering::Relaxed)
    }

    fn reset(&self, record_arrivals: bool) {
        self.seen.count.store(0, Ordering::Relaxed);
        *self.seen.arrivals.lock().unwrap() = record_arrivals.then(HashMap::new);
    }

    /// Waits until `count` requests arrived; returns when the last did (roughly: polled every ms).
    async fn wait_for(&self, count: u64, timeout: Duration) -> Instant {
        let start = Instant::now();
        while self.count() < count {
            if start.elapsed() > timeout {
                panic!(
                    "only {} of {count} deliveries within {timeout:?}",
                    self.count()
                );
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Instant::now()
    }
}

/// A herald process on a database with the demo scripts.
struct Herald {
    child: Child,
    addr: SocketAddr,
    db: Database,
    client: reqwest::Client,
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn demo_scripts(dir: &Path) -> PathBuf {
    let target = dir.join("scripts");
    std::fs::create_dir_all(&target).unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts");
    for entry in std::fs::read_dir(source).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), target.join(entry.file_name())).unwrap();
    }
    target
}

impl Herald {
    /// herald in `dir` (its scripts in `dir/scripts`, its generated key there on PostgreSQL).
    async fn start(dir: &Path, db: &Database) -> Herald {
        let addr = free_port();
        let db = db.clone();
        let child = Command::new(env!("CARGO_BIN_EXE_herald"))
            .current_dir(dir)
            .arg("serve")
            .arg("--db")
            .arg(db.as_argument())
            .arg("--scripts")
            .arg(dir.join("scripts"))
            .arg("--listen")
            .arg(addr.to_string())
            .env("HERALD_API_TOKEN", TOKEN)
            .env("HERALD_ALLOW_TARGETS", "127.0.0.0/8")
            .env(
                "RUST_LOG",
                std::env::var("BENCH_HERALD_LOG").unwrap_or("warn".into()),
            )
            .stdout(Stdio::null())
            .spawn()
            .expect("the herald binary runs");
        let herald = Herald {
            child,
            addr,
            db,
            client: reqwest::Client::new(),
        };
        for _ in 0..400 {
            if let Ok(r) = herald.client.get(herald.url("/readyz")).send().await {
                if r.status() == 200 {
                    return herald;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("herald did not become ready");
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn subscribe(&self, event: &str, target: &str) {
        let r = self
            .client
            .post(self.url("/EPT_WebhookSubscribe"))
            .bearer_auth(TOKEN)
            .json(&json!({"event": event, "target_url": target}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }

    /// Peak resident memory so far, in MiB (VmHWM).
    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    }

    fn stop(mut self) {
        terminate(&self.child);
        let _ = self.child.wait();
    }
}

/// SIGTERM, so that herald shuts down as it would in production.
fn terminate(child: &Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
}

/// One line of the report.
struct Row {
    scenario: &'static str,
    figure: String,
    value: f64,
    unit: &'static str,
    baseline: String,
    baseline_value: f64,
    /// `value / baseline_value`, or the inverse when lower is better; what the target speaks of.
    ratio: f64,
    target: &'static str,
}

/// Bare loopback POSTs with the same client settings and at most `concurrency` in flight.
async fn bare_post_rate(receiver: &Receiver, count: usize, concurrency: usize) -> f64 {
    let client = reqwest::Client::new();
    let body = json!({"id": 1, "title": "Bench deal", "amount": 1000.0}).to_string();
    receiver.reset(false);
    let start = Instant::now();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(concurrency));
    for _ in 0..count {
        let permit = semaphore.clone().acquire_owned().await.unwrap();
        let client = client.clone();
        let body = body.clone();
        let url = receiver.url("/bare");
        tokio::spawn(async move {
            client
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            drop(permit);
        });
    }
    receiver
        .wait_for(count as u64, Duration::from_secs(600))
        .await;
    count as f64 / start.elapsed().as_secs_f64()
}

async fn throughput(
    backend: &Backend,
    sizes: &Sizes,
    receiver: &Receiver,
    rows: &mut Vec<Row>,
) -> f64 {
    // The same concurrency herald allows one hook.
    let per_hook = herald::config::DeliverySettings::default().max_in_flight_per_hook;
    let bare = bare_post_rate(receiver, sizes.throughput_events, per_hook).await;
    let dir = tempfile::tempdir().unwrap();
    demo_scripts(dir.path());
    let herald = Herald::start(dir.path(), &backend.fresh(dir.path())).await;
    herald
        .subscribe("NewOpportunity", &receiver.url("/throughput"))
        .await;
    backend.print_statements("herald's start");
    receiver.reset(false);
    let db = herald.db.clone();
    let n = sizes.throughput_events;
    let start = Instant::now();
    let writer = tokio::task::spawn_blocking(move || {
        App::open(&db).insert_deals(n);
        start.elapsed()
    });
    let done = receiver.wait_for(n as u64, Duration::from_secs(1800)).await;
    let written = writer.await.unwrap();
    backend.print_statements("throughput");
    let rate = n as f64 / (done - start).as_secs_f64();
    // When the application's own writes set the pace, herald cannot go faster than they do.
    eprintln!(
        "throughput: the application wrote its {n} inserts in {:.1} s, the last arrived after {:.1} s",
        written.as_secs_f64(),
        (done - start).as_secs_f64()
    );
    rows.push(Row {
        scenario: "throughput",
        figure: format!("events/s, {n} inserts in transactions of 100, 1 subscriber"),
        value: rate,
        unit: "events/s",
        baseline: format!("bare loopback POST rate, {per_hook} in flight"),
        baseline_value: bare,
        ratio: rate / bare,
        target: targets(backend).throughput,
    });
    herald.stop();
    rate
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

async fn latency(backend: &Backend, sizes: &Sizes, receiver: &Receiver, rows: &mut Vec<Row>) {
    let interval = Duration::from_nanos(1_000_000_000 / sizes.latency_rate);
    let total = (sizes.latency_rate * sizes.latency_secs) as usize;

    // Baseline: the bare POST round trip at the same rate.
    let client = reqwest::Client::new();
    let mut bare = Vec::with_capacity(total);
    let mut ticker = tokio::time::interval(interval);
    let url = receiver.url("/bare");
    let (sender, mut results) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..total {
        ticker.tick().await;
        let client = client.clone();
        let url = url.clone();
        let sender = sender.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            client.post(url).body("{}").send().await.unwrap();
            let _ = sender.send(start.elapsed().as_secs_f64() * 1000.0);
        });
    }
    drop(sender);
    while let Some(ms) = results.recv().await {
        bare.push(ms);
    }
    bare.sort_by(|a, b| a.total_cmp(b));

    let dir = tempfile::tempdir().unwrap();
    demo_scripts(dir.path());
    let herald = Herald::start(dir.path(), &backend.fresh(dir.path())).await;
    herald
        .subscribe("NewOpportunity", &receiver.url("/latency"))
        .await;
    backend.print_statements("herald's start");
    receiver.reset(true);
    let db = herald.db.clone();
    let rate = sizes.latency_rate;
    let committed = tokio::task::spawn_blocking(move || {
        let mut app = App::open(&db);
        let mut commits = Vec::with_capacity(total);
        let start = Instant::now();
        for i in 0..total {
            let due = start + Duration::from_nanos(i as u64 * 1_000_000_000 / rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let began = Instant::now();
            let id = app.insert_deal_alone();
            let at = Instant::now();
            commits.push((id, at, at - began));
        }
        commits
    })
    .await
    .unwrap();
    receiver
        .wait_for(total as u64, Duration::from_secs(600))
        .await;
    backend.print_statements("latency");
    let arrivals = receiver.seen.arrivals.lock().unwrap().take().unwrap();
    let first_commit = committed.first().map(|(_, at, _)| *at);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    // (commit time from the first, latency, how long the application's insert took)
    let timeline: Vec<(f64, f64, f64)> = committed
        .iter()
        .filter_map(|(id, at, took)| {
            let since_start = ms(*at - first_commit?);
            arrivals
                .get(id)
                .map(|r| (since_start, ms(*r - *at), ms(*took)))
        })
        .collect();
    // Each event's commit time and latency, for finding what the slow ones have in common; the
    // application's own insert time shows when it waited for the write lock (or for its fsync),
    // fell behind its schedule and then wrote back to back.
    let tsv: String = timeline
        .iter()
        .map(|(at, latency, took)| format!("{at:.3}\t{latency:.3}\t{took:.3}\n"))
        .collect();
    std::fs::write(
        output_dir().join("latency.tsv"),
        format!("commit_ms\tlatency_ms\tapp_insert_ms\n{tsv}"),
    )
    .unwrap();
    let mut latencies: Vec<f64> = timeline.iter().map(|(_, latency, _)| *latency).collect();
    latencies.sort_by(|a, b| a.total_cmp(b));
    for (name, p) in [("p50", 0.5), ("p99", 0.99), ("max", 1.0)] {
        let value = percentile(&latencies, p);
        let base = percentile(&bare, p);
        rows.push(Row {
            scenario: "latency",
            figure: format!(
                "{name} ms commit to receipt at {rate}/s for {} s",
                sizes.latency_secs
            ),
            value,
            unit: "ms",
            baseline: format!("bare POST round trip {name}"),
            baseline_value: base,
            ratio: value / base,
            target: if name == "p99" {
                targets(backend).latency_p99
            } else {
                ""
            },
        });
    }
    herald.stop();
}

async fn fanout(
    backend: &Backend,
    sizes: &Sizes,
    receiver: &Receiver,
    throughput_rate: f64,
    rows: &mut Vec<Row>,
) {
    let dir = tempfile::tempdir().unwrap();
    demo_scripts(dir.path());
    let herald = Herald::start(dir.path(), &backend.fresh(dir.path())).await;
    for i in 0..sizes.fanout_hooks {
        herald
            .subscribe("NewOpportunity", &receiver.url(&format!("/fanout/{i}")))
            .await;
    }
    receiver.reset(false);
    let db = herald.db.clone();
    let n = sizes.fanout_events;
    let expected = (n * sizes.fanout_hooks) as u64;
    let start = Instant::now();
    let writer = tokio::task::spawn_blocking(move || App::open(&db).insert_deals(n));
    let done = receiver.wait_for(expected, Duration::from_secs(1800)).await;
    writer.await.unwrap();
    backend.print_statements("fan-out");
    let rate = expected as f64 / (done - start).as_secs_f64();
    rows.push(Row {
        scenario: "fan-out",
        figure: format!(
            "deliveries/s, {n} events to {} hooks each",
            sizes.fanout_hooks
        ),
        value: rate,
        unit: "deliveries/s",
        baseline: "throughput scenario's rate".into(),
        baseline_value: throughput_rate,
        ratio: rate / throughput_rate,
        target: ">= 0.80",
    });
    herald.stop();
}

/// Runs of the small backlog whose medians are the large one's baseline.
const SMALL_BACKLOG_RUNS: usize = 5;

/// Fills the outbox of a stopped herald with `deliveries` waiting deliveries (1,000 hooks, or fewer
/// for small backlogs), then starts it and measures the drain and the peak memory.
async fn backlog_run(backend: &Backend, receiver: &Receiver, deliveries: usize) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    demo_scripts(dir.path());
    // Start once so the database has herald's tables and the demo schema, then stop.
    let db = backend.fresh(dir.path());
    let herald = Herald::start(dir.path(), &db).await;
    herald.stop();
    let hooks = deliveries.clamp(1, 1000);
    let events = deliveries / hooks;
    let target = receiver.url("/backlog");
    let store_db = db.clone();
    tokio::task::spawn_blocking(move || {
        let store = Store::open_database(
            &store_db,
            &herald::config::PostgresSettings::default(),
            herald::store::Secrets::none(),
            Duration::from_secs(2),
        )
        .unwrap();
        for _ in 0..hooks {
            store
                .create_hook(NewHook {
                    target_url: target.clone(),
                    secret: herald::delivery::signing::generate_secret(),
                    authorization: None,
                    description: String::new(),
                    origin: HookOrigin::Subscription,
                    scope: Scope::Everything,
                    enabled: true,
                    events: vec!["NewOpportunity".into()],
                    made_by: None,
                    filter: None,
                    rate_limit_per_second: None,
                })
                .unwrap();
        }
        let batch: Vec<NewEvent> = (0..10usize.min(events))
            .map(|i| NewEvent {
                id: herald::ids::event_id(),
                trigger: "NewOpportunity".into(),
                row_id: Some(i as i64),
                payload: json!({"id": i, "title": "Backlog deal"}).to_string(),
                change_id: None,
                script_hash: None,
                resource_name: None,
                event_type: None,
                company_id: None,
                project_id: None,
                judgements: Vec::new(),
            })
            .collect();
        let mut stored = 0;
        while stored < events {
            let take = batch.len().min(events - stored);
            let fresh: Vec<NewEvent> = batch[..take]
                .iter()
                .map(|e| NewEvent {
                    id: herald::ids::event_id(),
                    ..e.clone()
                })
                .collect();
            store.insert_events(&fresh).unwrap();
            stored += take;
            // What herald's checkpointer does while it runs and the receiver is down.
            if stored % 10_000 == 0 {
                store.maintain().unwrap();
            }
        }
    })
    .await
    .unwrap();
    let expected = (hooks * events) as u64;
    backend.print_statements(&format!("filling a backlog of {deliveries}"));
    receiver.reset(false);
    let start = Instant::now();
    let herald = Herald::start(dir.path(), &db).await;
    let mut peak: f64 = 0.0;
    // The drain is timed from the first receipt, not from the start of the process: herald's
    // start-up would otherwise be a fifth of a small backlog's time and none of a large one's.
    let mut first_receipt = None;
    let mut polls = 0u64;
    while receiver.count() < expected {
        if first_receipt.is_none() && receiver.count() > 0 {
            first_receipt = Some(Instant::now());
        }
        if polls % 50 == 0 {
            peak = peak.max(herald.peak_rss_mib());
        }
        polls += 1;
        if start.elapsed() > Duration::from_secs(3600) {
            panic!("backlog not drained within an hour");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let first_receipt = first_receipt.unwrap_or(start);
    let rate = (expected - 1).max(1) as f64 / first_receipt.elapsed().as_secs_f64();
    peak = peak.max(herald.peak_rss_mib());
    herald.stop();
    backend.print_statements(&format!("draining a backlog of {deliveries}"));
    (rate, peak)
}

async fn backlog(
    backend: &Backend,
    sizes: &Sizes,
    receiver: &Receiver,
    throughput_rate: f64,
    rows: &mut Vec<Row>,
) {
    // The small drain lasts a fraction of a second, so one run of it swung the flatness ratio by
    // a fifth from run to run: its figures are the medians of a few runs.
    let mut small_runs = Vec::new();
    for _ in 0..SMALL_BACKLOG_RUNS {
        small_runs.push(backlog_run(backend, receiver, sizes.backlog_small).await);
    }
    let small_rate = median(small_runs.iter().map(|(rate, _)| *rate).collect());
    let small_peak = median(small_runs.iter().map(|(_, peak)| *peak).collect());
    let (large_rate, large_peak) = backlog_run(backend, receiver, sizes.backlog_large).await;
    rows.push(Row {
        scenario: "backlog",
        figure: format!("peak resident MiB with {} waiting", sizes.backlog_large),
        value: large_peak,
        unit: "MiB",
        baseline: format!(
            "peak with {} waiting (median of {SMALL_BACKLOG_RUNS})",
            sizes.backlog_small
        ),
        baseline_value: small_peak,
        ratio: large_peak / small_peak,
        target: "< 150 MiB",
    });
    rows.push(Row {
        scenario: "backlog",
        figure: format!("drain deliveries/s from {} waiting", sizes.backlog_large),
        value: large_rate,
        unit: "deliveries/s",
        baseline: "throughput scenario's rate".into(),
        baseline_value: throughput_rate,
        ratio: large_rate / throughput_rate,
        target: "",
    });
    rows.push(Row {
        scenario: "backlog",
        figure: format!(
            "drain rate from {} vs from {} waiting",
            sizes.backlog_large, sizes.backlog_small
        ),
        value: large_rate,
        unit: "deliveries/s",
        baseline: format!(
            "drain rate from {} waiting (median of {SMALL_BACKLOG_RUNS})",
            sizes.backlog_small
        ),
        baseline_value: small_rate,
        ratio: large_rate / small_rate,
        target: "flat: ~1.0",
    });
}

/// Body-script render of NewOpportunity against a native build of the same payload.
fn script_cost(backend: &Backend, sizes: &Sizes, rows: &mut Vec<Row>) {
    let dir = tempfile::tempdir().unwrap();
    let scripts_dir = demo_scripts(dir.path());
    let mut config = herald::Config::with_paths(backend.fresh(dir.path()), &scripts_dir);
    config.secret_key_file = Some(dir.path().join("bench.secret-key"));
    let (store, scripts) = herald::server::prepare(&config).unwrap();
    let sandbox = herald::scripts::Sandbox::new(&config.sandbox, store.script_db().unwrap());
    let script = scripts.body("NewOpportunity").unwrap().clone();
    let render = || {
        let payload = sandbox.render(&script, Some(1000), None).unwrap();
        std::hint::black_box(payload);
    };
    // The same rows read and the same JSON text produced (the payload is stored as text).
    let app = std::cell::RefCell::new(App::open(&config.db));
    let native = || {
        std::hint::black_box(app.borrow_mut().native_payload(1000));
    };

    // Alternating rounds, each side's median: a shared machine's noise falls on both alike.
    const ROUNDS: usize = 7;
    let per_round = (sizes.renders / ROUNDS).max(1);
    let micros_per = |f: &dyn Fn()| {
        let start = Instant::now();
        for _ in 0..per_round {
            f();
        }
        start.elapsed().as_secs_f64() * 1e6 / per_round as f64
    };
    let (mut scripted_rounds, mut native_rounds) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        scripted_rounds.push(micros_per(&render));
        native_rounds.push(micros_per(&native));
    }
    let scripted = median(scripted_rounds);
    let native = median(native_rounds);
    rows.push(Row {
        scenario: "script cost",
        figure: "µs per NewOpportunity body-script render".into(),
        value: scripted,
        unit: "µs",
        baseline: "native Rust build of the same payload".into(),
        baseline_value: native,
        ratio: scripted / native,
        target: "< 2.0",
    });
}

/// An application's insert into a tracked table against the same insert into an untracked twin.
fn trigger_cost(backend: &Backend, sizes: &Sizes, rows: &mut Vec<Row>) {
    let dir = tempfile::tempdir().unwrap();
    let scripts_dir = demo_scripts(dir.path());
    let mut config = herald::Config::with_paths(backend.fresh(dir.path()), &scripts_dir);
    config.secret_key_file = Some(dir.path().join("bench.secret-key"));
    let (store, _) = herald::server::prepare(&config).unwrap();
    drop(store);
    let mut app = App::open(&config.db);
    // The same table as the demo's Deal (its defaults cost too), under another name.
    app.create_untracked_twin();
    // Alternating rounds, each side's median, as for the script cost: most of an insert's time here
    // is its share of the commit's fsync, which a shared disk makes vary from round to round.
    const ROUNDS: usize = 9;
    let per_round = (sizes.inserts / 2).max(100);
    let mut time_inserts = |table: &str| {
        let start = Instant::now();
        app.insert_for_trigger_cost(table, per_round);
        start.elapsed().as_secs_f64() * 1e6 / per_round as f64
    };
    let (mut tracked_rounds, mut untracked_rounds) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        untracked_rounds.push(time_inserts("\"DealUntracked\""));
        tracked_rounds.push(time_inserts("\"Deal\""));
    }
    let (tracked, untracked) = (median(tracked_rounds), median(untracked_rounds));
    rows.push(Row {
        scenario: "trigger cost",
        figure: "µs per insert into tracked Deal (transactions of 100)".into(),
        value: tracked,
        unit: "µs",
        baseline: "same insert into an untracked table".into(),
        baseline_value: untracked,
        ratio: tracked / untracked,
        target: "<= 2.0",
    });
}

fn median(mut rounds: Vec<f64>) -> f64 {
    rounds.sort_by(|a, b| a.total_cmp(b));
    rounds[rounds.len() / 2]
}

/// What each database is asked to reach (issues "Performance" and "PostgreSQL").
struct Targets {
    throughput: &'static str,
    latency_p99: &'static str,
}

fn targets(backend: &Backend) -> Targets {
    match backend {
        Backend::Sqlite => Targets {
            throughput: ">= 0.50",
            latency_p99: "< 10 ms",
        },
        Backend::Postgres(_) => Targets {
            throughput: ">= 0.20",
            latency_p99: "< 20 ms",
        },
    }
}

fn report(backend: &Backend, rows: &[Row], quick: bool) {
    println!();
    println!("herald on {}", backend.name());
    println!(
        "{:<13} {:<62} {:>12} {:>12}  {:>7}  target",
        "scenario", "figure", "value", "baseline", "ratio"
    );
    for r in rows {
        println!(
            "{:<13} {:<62} {:>12.2} {:>12.2}  {:>7.3}  {}",
            r.scenario, r.figure, r.value, r.baseline_value, r.ratio, r.target
        );
    }
    let json = json!({
        "backend": backend.name(),
        "quick": quick,
        "herald_version": env!("CARGO_PKG_VERSION"),
        "scenarios": rows.iter().map(|r| json!({
            "scenario": r.scenario,
            "figure": r.figure,
            "value": r.value,
            "unit": r.unit,
            "baseline": r.baseline,
            "baseline_value": r.baseline_value,
            "ratio": r.ratio,
            "target": r.target,
        })).collect::<Vec<_>>(),
    });
    let path = output_dir().join(format!("pipeline-{}.json", backend.name()));
    std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    println!("\nwritten to {}", path.display());
}

/// `target/bench`, where the report and the latency timeline go.
fn output_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    // `cargo bench` passes --bench; a filter picks scenarios by name.
    let only: Vec<&String> = args
        .iter()
        .skip(1)
        .enumerate()
        .filter(|(i, a)| {
            !a.starts_with("--")
                && args
                    .get(*i)
                    .is_none_or(|before| before != "--backend" && before != "--nodes")
        })
        .map(|(_, a)| a)
        .collect();
    let backend = Backend::from_args(&args);
    let node_count: Option<usize> = args.iter().position(|a| a == "--nodes").map(|i| {
        args.get(i + 1)
            .and_then(|n| n.parse().ok())
            .filter(|n| *n >= 2)
            .expect("--nodes N: N herald processes, at least 2")
    });
    let wants = |name: &str| only.is_empty() || only.iter().any(|o| name.contains(o.as_str()));
    let sizes = if quick { Sizes::quick() } else { Sizes::full() };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    runtime.block_on(async {
        let receiver = Receiver::start().await;
        let mut rate = f64::NAN;
        if wants("throughput") || wants("fan-out") || wants("backlog") {
            eprintln!("throughput...");
            rate = throughput(&backend, &sizes, &receiver, &mut rows).await;
        }
        if wants("latency") {
            backend.settle();
            eprintln!("latency...");
            latency(&backend, &sizes, &receiver, &mut rows).await;
        }
        if wants("fan-out") {
            backend.settle();
            eprintln!("fan-out...");
            fanout(&backend, &sizes, &receiver, rate, &mut rows).await;
        }
        if wants("backlog") {
            backend.settle();
            eprintln!("backlog...");
            backlog(&backend, &sizes, &receiver, rate, &mut rows).await;
        }
        if let Some(count) = node_count {
            eprintln!("nodes: 1 and {count}, then a failover...");
            nodes::nodes(&backend, &sizes, &receiver, count, &mut rows).await;
        }
    });
    if wants("script") {
        eprintln!("script cost...");
        script_cost(&backend, &sizes, &mut rows);
    }
    if wants("trigger") {
        eprintln!("trigger cost...");
        trigger_cost(&backend, &sizes, &mut rows);
    }
    report(&backend, &rows, quick);
}
