//! What every test needs: a herald on a temp database, a receiver that records what it gets, and
//! bounded waiting.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use herald::database::Database;
use herald::Config;

pub use crate::app_db::{off_the_runtime, AppDb, CellValue};
pub use herald::store::Cell;
use serde_json::Value;
use tokio::sync::oneshot;

pub const TOKEN: &str = "test-token";

/// Polls `check` every 20 ms until it returns `Some`, for at most `timeout`. `check` may block
/// (read the store): it runs off the runtime's worker.
pub async fn eventually<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(value) = crate::app_db::off_the_runtime(&mut check) {
            return Some(value);
        }
        if start.elapsed() > timeout {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A copy of the repository's demo scripts in `dir/scripts`.
/// Asks `GET {base}/readyz` every 50 ms until it answers `status`, for at most `timeout`; returns
/// that answer's body, or `None` if it never came.
pub async fn readiness_becomes(
    client: &reqwest::Client,
    base: &str,
    status: u16,
    timeout: Duration,
) -> Option<Value> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await {
            if r.status().as_u16() == status {
                return Some(r.json().await.unwrap_or(Value::Null));
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

pub fn demo_scripts(dir: &Path) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts");
    let target = dir.join("scripts");
    std::fs::create_dir_all(&target).unwrap();
    for entry in std::fs::read_dir(source).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), target.join(entry.file_name())).unwrap();
    }
    target
}

/// Whether this run of the tests puts herald on PostgreSQL (`HERALD_TEST_DB=postgres`) rather
/// than on an SQLite file: the same tests run on both (see README.md).
pub fn on_postgres() -> bool {
    match std::env::var("HERALD_TEST_DB").as_deref() {
        Ok("postgres") | Ok("postgresql") => true,
        Ok("sqlite") | Ok("") | Err(_) => false,
        Ok(other) => panic!("HERALD_TEST_DB={other}: expected sqlite or postgres"),
    }
}

/// The database of the test whose folder is `dir`: `dir/herald.db`, or a database of the test
/// PostgreSQL server made for that folder (the same one each time, as the file is).
pub fn test_database(dir: &Path) -> Database {
    if on_postgres() {
        static BY_FOLDER: Mutex<Vec<(PathBuf, String)>> = Mutex::new(Vec::new());
        let mut known = BY_FOLDER.lock().unwrap_or_else(|p| p.into_inner());
        let url = match known.iter().find(|(folder, _)| folder == dir) {
            Some((_, url)) => url.clone(),
            None => {
                let url = crate::app_db::off_the_runtime(crate::pg_server::fresh_database);
                known.push((dir.to_owned(), url.clone()));
                url
            }
        };
        Database::parse(&url).unwrap()
    } else {
        Database::Sqlite(dir.join("herald.db"))
    }
}

/// Settings for tests: quick retries, loopback targets allowed, a known token; on a fresh database
/// of the backend under test.
pub fn test_config(dir: &Path, scripts: &Path) -> Config {
    test_config_on(test_database(dir), dir, scripts)
}

/// `test_config` on `db`.
pub fn test_config_on(db: Database, dir: &Path, scripts: &Path) -> Config {
    let mut config = Config::with_paths(db, scripts);
    // Beside the database on SQLite (the default there), and never the working directory.
    config.secret_key_file = Some(config.db.sqlite_path().map_or_else(
        || dir.join("herald.secret-key"),
        |_| config.db.companion_file("secret-key"),
    ));
    config.api_token = Some(TOKEN.into());
    config.delivery.allow_targets = vec!["127.0.0.0/8".parse().unwrap()];
    config.delivery.retry_schedule = vec![Duration::from_millis(200); 3];
    // Long enough that a loaded machine's stall never turns an answer into a time-out and a
    // second attempt (tests of time-outs set their own).
    config.delivery.timeout = Duration::from_secs(5);
    // Tests poll the API in tight loops; the limiter has its own test.
    config.rate_limit = None;
    config
}

/// A `Deal` of the demo CRM as the application inserts it; `Deal::titled` leaves the rest unset.
#[derive(Clone, Copy)]
pub struct Deal<'a> {
    pub title: &'a str,
    pub amount: Option<f64>,
    pub is_project: bool,
    pub company_id: Option<i64>,
    pub project_id: Option<i64>,
}

impl<'a> Deal<'a> {
    pub fn titled(title: &'a str) -> Deal<'a> {
        Deal {
            title,
            amount: None,
            is_project: false,
            company_id: None,
            project_id: None,
        }
    }
}

pub fn insert_deal_with(app: &mut AppDb, deal: Deal<'_>) -> i64 {
    app.insert(
        "INSERT INTO \"Deal\" (title, amount, is_project, company_id, project_id)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        &[
            Cell::Text(deal.title.into()),
            deal.amount.map_or(Cell::Null, Cell::Real),
            Cell::Integer(deal.is_project.into()),
            deal.company_id.map_or(Cell::Null, Cell::Integer),
            deal.project_id.map_or(Cell::Null, Cell::Integer),
        ],
    )
}

/// Asserts an API error: the status, the contract's error code, and a message in words.
pub fn assert_error(status: u16, body: &Value, expected_status: u16, expected_code: &str) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["error"]["code"], expected_code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

pub struct TestHerald {
    pub addr: SocketAddr,
    pub db: Database,
    /// The key file herald sealed secrets with.
    pub secret_key_file: Option<PathBuf>,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// The temp folder of a herald made by `demo`, removed once the herald is dropped.
    dir: Option<tempfile::TempDir>,
}

impl TestHerald {
    /// The opening most tests share: a herald on a fresh temp database with a copy of the demo
    /// scripts and `test_config`, changed by `tweak` before it starts.
    pub async fn demo(tweak: impl FnOnce(&mut Config)) -> TestHerald {
        let dir = tempfile::tempdir().unwrap();
        let scripts = demo_scripts(dir.path());
        let mut config = test_config(dir.path(), &scripts);
        tweak(&mut config);
        let mut herald = TestHerald::start(config).await;
        herald.dir = Some(dir);
        herald
    }

    /// `demo` on an SQLite file whatever `HERALD_TEST_DB` says: for what only SQLite does.
    pub async fn on_sqlite(tweak: impl FnOnce(&mut Config)) -> TestHerald {
        let dir = tempfile::tempdir().unwrap();
        let scripts = demo_scripts(dir.path());
        let db = Database::Sqlite(dir.path().join("herald.db"));
        let mut config = test_config_on(db, dir.path(), &scripts);
        tweak(&mut config);
        let mut herald = TestHerald::start(config).await;
        herald.dir = Some(dir);
        herald
    }

    /// `start`, keeping `dir` (the test's folder) until the herald is dropped.
    pub async fn start_in(config: Config, dir: tempfile::TempDir) -> TestHerald {
        let mut herald = TestHerald::start(config).await;
        herald.dir = Some(dir);
        herald
    }

    pub async fn start(config: Config) -> TestHerald {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let db = config.db.clone();
        let secret_key_file = config.secret_key_file.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(herald::serve(config, listener, async {
            let _ = stopped.await;
        }));
        let herald = TestHerald {
            addr,
            db,
            secret_key_file,
            client: reqwest::Client::new(),
            stop: Some(stop),
            task,
            dir: None,
        };
        for _ in 0..200 {
            if herald.task.is_finished() {
                let ended = herald.task.await;
                panic!("herald stopped before it was ready: {ended:?}");
            }
            if let Ok(r) = herald.client.get(herald.url("/readyz")).send().await {
                if r.status() == 200 {
                    return herald;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("herald did not become ready");
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("herald stops within 10 s")
            .unwrap()
            .unwrap();
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Inserts `deal` from another connection, as the application would; returns its id.
    pub fn insert_deal(&self, deal: Deal<'_>) -> i64 {
        insert_deal_with(&mut self.app(), deal)
    }

    /// Inserts `deals` in one transaction of another connection, as an import would: they are
    /// all there at once, however slowly the machine opens connections.
    pub fn insert_deals(&self, deals: Vec<Deal<'_>>) -> Vec<i64> {
        let mut app = self.app();
        app.batch("BEGIN");
        let ids = deals
            .into_iter()
            .map(|deal| insert_deal_with(&mut app, deal))
            .collect();
        app.batch("COMMIT");
        ids
    }

    /// A connection of the application's own, as another process would have.
    pub fn app(&self) -> AppDb {
        AppDb::open(&self.db)
    }

    /// herald's store, with the key herald sealed secrets with.
    pub fn store(&self) -> TestStore {
        let mut config = herald::Config::with_paths(self.db.clone(), "scripts");
        config.secret_key_file = self.secret_key_file.clone();
        TestStore(crate::app_db::off_the_runtime(|| {
            herald::server::open_store(&config).unwrap()
        }))
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(path))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Waits (15 s at most) until `GET path` answers 200 with a body for which `check` holds.
    pub async fn get_until(&self, path: &str, check: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..750 {
            let (status, body) = self.get(path).await;
            assert_eq!(status, 200, "{body}");
            if check(&body) {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (_, body) = self.get(path).await;
        panic!("{path} never got there; last: {body}");
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(self.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Any request with the token; `body` is sent as JSON when given.
    pub async fn send(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .client
            .request(method, self.url(path))
            .bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Creates an admin hook; returns the response (with the secret whole).
    pub async fn create_hook(&self, body: Value) -> Value {
        let (status, hook) = self.post("/api/v1/hooks", body).await;
        assert_eq!(status, 201, "{hook}");
        hook
    }

    /// Subscribes `target` to `event`; returns the response (id, secret, ...).
    pub async fn subscribe(&self, event: &str, target: &str) -> Value {
        let (status, body) = self
            .post(
                "/EPT_WebhookSubscribe",
                serde_json::json!({"event": event, "target_url": target}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body
    }
}

/// herald's store as tests read it from their async bodies: each call steps off the runtime's
/// worker, since the store blocks (and PostgreSQL's client runs a runtime of its own).
pub struct TestStore(pub herald::store::Store);

impl TestStore {
    pub fn delivery_status(
        &self,
        message_id: &str,
    ) -> Result<Option<herald::store::DeliveryStatus>, herald::store::StoreError> {
        crate::app_db::off_the_runtime(|| self.0.delivery_status(message_id))
    }

    pub fn attempts_of(
        &self,
        message_id: &str,
    ) -> Result<Vec<herald::store::StoredAttempt>, herald::store::StoreError> {
        crate::app_db::off_the_runtime(|| self.0.attempts_of(message_id))
    }

    pub fn get_hook(
        &self,
        id: &str,
    ) -> Result<Option<herald::store::Hook>, herald::store::StoreError> {
        crate::app_db::off_the_runtime(|| self.0.get_hook(id))
    }

    pub fn recent_script_failures(
        &self,
        limit: usize,
    ) -> Result<Vec<herald::store::ScriptFailure>, herald::store::StoreError> {
        crate::app_db::off_the_runtime(|| self.0.recent_script_failures(limit))
    }
}

#[derive(Clone, Debug)]
pub struct Received {
    /// The path it was posted to.
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// How the receiver answers: a status, headers, a body and an optional delay.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    pub delay: Duration,
}

impl Answer {
    pub fn status(status: u16) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: String::new(),
            delay: Duration::ZERO,
        }
    }
}

#[derive(Default)]
struct ReceiverState {
    received: Vec<Received>,
    /// Answers to give, in order; when empty, `default`.
    queued: VecDeque<Answer>,
    default: Option<Answer>,
    /// Requests being answered now, and the most there ever were at once.
    in_flight: usize,
    peak_in_flight: usize,
}

pub struct TestReceiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<ReceiverState>>,
    stop: Option<oneshot::Sender<()>>,
}

impl TestReceiver {
    pub async fn start() -> TestReceiver {
        Self::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    pub async fn start_on(addr: SocketAddr) -> TestReceiver {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(ReceiverState::default()));
        let handler_state = state.clone();
        let app = Router::new().fallback(
            move |uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
                let state = handler_state.clone();
                async move {
                    let answer = {
                        let mut s = state.lock().unwrap();
                        s.received.push(Received {
                            path: uri.path().to_owned(),
                            headers,
                            body,
                            at: Instant::now(),
                        });
                        s.in_flight += 1;
                        s.peak_in_flight = s.peak_in_flight.max(s.in_flight);
                        s.queued
                            .pop_front()
                            .or_else(|| s.default.clone())
                            .unwrap_or_else(|| Answer::status(200))
                    };
                    tokio::time::sleep(answer.delay).await;
                    state.lock().unwrap().in_flight -= 1;
                    let mut response =
                        (StatusCode::from_u16(answer.status).unwrap(), answer.body).into_response();
                    for (name, value) in answer.headers {
                        response.headers_mut().insert(name, value.parse().unwrap());
                    }
                    response
                }
            },
        );
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        TestReceiver {
            addr,
            state,
            stop: Some(stop),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn queue(&self, answer: Answer) {
        self.state.lock().unwrap().queued.push_back(answer);
    }

    pub fn answer_always(&self, answer: Answer) {
        self.state.lock().unwrap().default = Some(answer);
    }

    /// The most requests it was answering at once.
    pub fn peak_in_flight(&self) -> usize {
        self.state.lock().unwrap().peak_in_flight
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// Waits (at most `timeout`) until at least `count` requests arrived; returns them all.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Received> {
        eventually(timeout, || {
            let received = self.received();
            (received.len() >= count).then_some(received)
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "expected {count} deliveries within {timeout:?}, got {}",
                self.received().len()
            )
        })
    }

    pub fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for TestReceiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
