//! The database a bench run puts herald on (`--backend sqlite`, the default, or `postgres`), and the
//! application's own connection to it: the inserts that make changes, and the reads of the native
//! baselines.
//!
//! PostgreSQL runs as a server of the bench's own on this machine, started from Debian's packages
//! with PostgreSQL's default durability (`fsync` and `synchronous_commit` on), a fresh database
//! per scenario.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use herald::database::Database;
use serde_json::{json, Value};

#[path = "../../tests/it/pg_server.rs"]
#[allow(dead_code)]
mod pg_server;

pub enum Backend {
    Sqlite,
    Postgres(pg_server::PrivateServer),
}

static DATABASES: AtomicUsize = AtomicUsize::new(0);

impl Backend {
    pub fn from_args(args: &[String]) -> Backend {
        let chosen = args
            .iter()
            .position(|a| a == "--backend")
            .and_then(|i| args.get(i + 1))
            .map(String::as_str)
            .unwrap_or("sqlite");
        let statements = args.iter().any(|a| a == "--statements");
        match chosen {
            "sqlite" => Backend::Sqlite,
            "postgres" | "postgresql" if statements => {
                Backend::Postgres(pg_server::private_server_with(&[
                    "shared_preload_libraries=pg_stat_statements",
                    "pg_stat_statements.track_planning=on",
                ]))
            }
            "postgres" | "postgresql" => Backend::Postgres(pg_server::private_server()),
            other => panic!("--backend {other}: expected sqlite or postgres"),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// A new, empty database for one scenario. (The client blocks on a runtime of its own: off
    /// the bench's runtime, when called from it.)
    pub fn fresh(&self, dir: &Path) -> Database {
        match self {
            Backend::Sqlite => Database::Sqlite(dir.join("bench.db")),
            Backend::Postgres(server) => tokio::task::block_in_place(|| {
                let name = format!("bench_{}", DATABASES.fetch_add(1, Ordering::SeqCst));
                server
                    .0
                    .connect("postgres")
                    .batch_execute(&format!("CREATE DATABASE {name}"))
                    .unwrap();
                Database::parse(&server.0.url(&name)).unwrap()
            }),
        }
    }
}

impl Backend {
    /// Between scenarios: on PostgreSQL the databases of the scenarios run so far are dropped and
    /// the server checkpoints, so that the next scenario does not share the server with the last
    /// one's autovacuum and dirty pages (after the throughput run's 100,000 events they took the
    /// latency run's p99 from 14 to 18 ms when run alone to 37 to 74 ms). SQLite's scenarios have
    /// files of their own and nothing running beside them.
    pub fn settle(&self) {
        let Backend::Postgres(server) = self else {
            return;
        };
        tokio::task::block_in_place(|| {
            let mut client = server.0.connect("postgres");
            for n in 0..DATABASES.load(Ordering::SeqCst) {
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS bench_{n} WITH (FORCE)"))
                    .unwrap();
            }
            client.batch_execute("CHECKPOINT").unwrap();
        });
    }

    /// With `--statements` on PostgreSQL: the statements the server spent the most time on
    /// since the last call (planning and executing, herald's and the application's), printed
    /// after `scenario`, and their counts started over.
    pub fn print_statements(&self, scenario: &str) {
        let Backend::Postgres(server) = self else {
            return;
        };
        if server.0.settings.is_empty() {
            return;
        }
        tokio::task::block_in_place(|| {
            let mut client = server.0.connect("postgres");
            client
                .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                .unwrap();
            let rows = client
                .query(
                    "SELECT calls, total_exec_time, total_plan_time, rows,
                            left(regexp_replace(query, '\\s+', ' ', 'g'), 100)
                     FROM pg_stat_statements
                     WHERE query NOT LIKE '%pg_stat_statements%'
                     ORDER BY total_exec_time + total_plan_time DESC LIMIT 25",
                    &[],
                )
                .unwrap();
            eprintln!("statements after {scenario}, by the server's time on them:");
            eprintln!(
                "{:>8} {:>10} {:>10} {:>9} {:>8}  statement",
                "calls", "exec ms", "plan ms", "ms/call", "rows"
            );
            for row in rows {
                let calls: i64 = row.get(0);
                let exec: f64 = row.get(1);
                let plan: f64 = row.get(2);
                eprintln!(
                    "{calls:>8} {exec:>10.1} {plan:>10.1} {:>9.3} {:>8}  {}",
                    (exec + plan) / calls.max(1) as f64,
                    row.get::<_, i64>(3),
                    row.get::<_, &str>(4)
                );
            }
            client
                .batch_execute("SELECT pg_stat_statements_reset()")
                .unwrap();
        });
    }
}

/// The application's connection (on PostgreSQL with its statements prepared once, as an
/// application's driver would keep them).
pub enum App {
    Sqlite(rusqlite::Connection),
    Postgres(
        postgres::Client,
        std::collections::HashMap<String, postgres::Statement>,
    ),
}

/// A statement prepared once per connection.
fn prepared(
    client: &mut postgres::Client,
    cache: &mut std::collections::HashMap<String, postgres::Statement>,
    sql: &str,
) -> postgres::Statement {
    if let Some(statement) = cache.get(sql) {
        return statement.clone();
    }
    let statement = client.prepare(sql).unwrap();
    cache.insert(sql.to_owned(), statement.clone());
    statement
}

const INSERT_DEAL: &str =
    "INSERT INTO \"Deal\" (title, amount, stage, is_project, company_id, project_id)
     VALUES ('Bench deal', 1000.0, 'lead', 1, 1, 10)";

impl App {
    pub fn open(db: &Database) -> App {
        match db {
            Database::Sqlite(path) => {
                let conn = rusqlite::Connection::open(path).unwrap();
                conn.busy_timeout(Duration::from_secs(10)).unwrap();
                App::Sqlite(conn)
            }
            Database::Postgres(url) => App::Postgres(
                url.config().unwrap().connect(postgres::NoTls).unwrap(),
                Default::default(),
            ),
        }
    }

    /// `count` project deals in transactions of 100. On PostgreSQL each transaction is one
    /// statement of 100 rows (still 100 inserts, each tracked): one row per round trip, the
    /// application's own writes would set the pace on this machine, not herald (row by row they
    /// took 25.7 s for 100,000 rows, and herald delivered the last 0.3 s later).
    pub fn insert_deals(&mut self, count: usize) {
        match self {
            App::Sqlite(_) => self.insert_into("\"Deal\"", count, INSERT_DEAL),
            App::Postgres(client, cache) => {
                let statement = prepared(
                    client,
                    cache,
                    "INSERT INTO \"Deal\" (title, amount, stage, is_project, company_id, project_id)
                     SELECT 'Bench deal', 1000.0, 'lead', 1, 1, 10 FROM generate_series(1, $1)",
                );
                let mut left = count;
                while left > 0 {
                    let n = left.min(100);
                    client.execute(&statement, &[&(n as i32)]).unwrap();
                    left -= n;
                }
            }
        }
    }

    /// `count` rows of `insert` (into `table`) in transactions of 100.
    fn insert_into(&mut self, table: &str, count: usize, insert: &str) {
        let insert = insert.replacen("\"Deal\"", table, 1);
        let mut left = count;
        while left > 0 {
            let n = left.min(100);
            match self {
                App::Sqlite(conn) => {
                    let tx = conn.transaction().unwrap();
                    {
                        let mut stmt = tx.prepare_cached(&insert).unwrap();
                        for _ in 0..n {
                            stmt.execute([]).unwrap();
                        }
                    }
                    tx.commit().unwrap();
                }
                App::Postgres(client, cache) => {
                    let stmt = prepared(client, cache, &insert);
                    let mut tx = client.transaction().unwrap();
                    for _ in 0..n {
                        tx.execute(&stmt, &[]).unwrap();
                    }
                    tx.commit().unwrap();
                }
            }
            left -= n;
        }
    }

    /// One project deal in a transaction of its own; its id.
    pub fn insert_deal_alone(&mut self) -> i64 {
        match self {
            App::Sqlite(conn) => {
                conn.prepare_cached(INSERT_DEAL)
                    .unwrap()
                    .execute([])
                    .unwrap();
                conn.last_insert_rowid()
            }
            App::Postgres(client, cache) => {
                let stmt = prepared(client, cache, &format!("{INSERT_DEAL} RETURNING id"));
                client.query_one(&stmt, &[]).unwrap().get(0)
            }
        }
    }

    /// A table like `Deal` (its defaults too) that herald does not track.
    pub fn create_untracked_twin(&mut self) {
        match self {
            App::Sqlite(conn) => {
                let deal_sql: String = conn
                    .query_row(
                        "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'Deal'",
                        [],
                        |r| r.get(0),
                    )
                    .unwrap();
                let untracked_sql = deal_sql.replacen("Deal", "DealUntracked", 1);
                assert!(untracked_sql.contains("DealUntracked ("), "{untracked_sql}");
                conn.execute_batch(&untracked_sql).unwrap();
            }
            App::Postgres(client, _) => client
                // LIKE copies columns, defaults, the identity (with a sequence of its own) and
                // indexes, but not foreign keys: those the demo's Deal checks on every insert.
                .batch_execute(
                    "CREATE TABLE \"DealUntracked\" (LIKE \"Deal\" INCLUDING ALL);
                     ALTER TABLE \"DealUntracked\"
                         ADD FOREIGN KEY (company_id) REFERENCES \"Company\"(id),
                         ADD FOREIGN KEY (project_id) REFERENCES \"Project\"(id),
                         ADD FOREIGN KEY (contact_id) REFERENCES \"Contact\"(id);",
                )
                .unwrap(),
        }
    }

    /// `count` inserts into `table` (the tracked `"Deal"` or its twin), in transactions of 100.
    pub fn insert_for_trigger_cost(&mut self, table: &str, count: usize) {
        self.insert_into(
            table,
            count,
            "INSERT INTO \"Deal\" (title, amount, stage, is_project, company_id, project_id)
             VALUES ('Trigger cost', 1.0, 'lead', 0, 1, 10)",
        );
    }

    /// The NewOpportunity payload of deal `id` built in Rust from the same rows the body script
    /// reads, as the JSON text herald stores: the script cost's baseline.
    pub fn native_payload(&mut self, id: i64) -> String {
        let payload = match self {
            App::Sqlite(conn) => {
                let mut deal = conn
                    .prepare_cached(
                        "SELECT id, title, amount, stage, company_id, project_id, created_at FROM Deal WHERE id = ?1",
                    )
                    .unwrap();
                let (id, title, amount, stage, company_id, project_id, created_at) = deal
                    .query_row([id], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, Option<f64>>(2)?,
                            r.get::<_, Option<String>>(3)?,
                            r.get::<_, Option<i64>>(4)?,
                            r.get::<_, Option<i64>>(5)?,
                            r.get::<_, Option<String>>(6)?,
                        ))
                    })
                    .unwrap();
                let mut company = conn
                    .prepare_cached("SELECT id, name, city FROM Company WHERE id = ?1")
                    .unwrap();
                let company = company
                    .query_row([company_id], |r| {
                        Ok(json!({"id": r.get::<_, i64>(0)?, "name": r.get::<_, String>(1)?, "city": r.get::<_, Option<String>>(2)?}))
                    })
                    .unwrap_or(Value::Null);
                json!({
                    "id": id, "title": title, "amount": amount, "stage": stage, "company": company,
                    "project_id": project_id, "created_at": created_at,
                })
            }
            App::Postgres(client, cache) => {
                let deal = prepared(
                    client,
                    cache,
                    "SELECT id, title, amount, stage, company_id, project_id, created_at
                     FROM \"Deal\" WHERE id = $1",
                );
                let deal = client.query_one(&deal, &[&id]).unwrap();
                let company_id: Option<i64> = deal.get(4);
                let company = prepared(
                    client,
                    cache,
                    "SELECT id, name, city FROM \"Company\" WHERE id = $1",
                );
                let company = client
                    .query_opt(&company, &[&company_id])
                    .unwrap()
                    .map_or(Value::Null, |r| {
                        json!({"id": r.get::<_, i64>(0), "name": r.get::<_, String>(1), "city": r.get::<_, Option<String>>(2)})
                    });
                json!({
                    "id": deal.get::<_, i64>(0), "title": deal.get::<_, String>(1),
                    "amount": deal.get::<_, Option<f64>>(2), "stage": deal.get::<_, Option<String>>(3),
                    "company": company, "project_id": deal.get::<_, Option<i64>>(5),
                    "created_at": deal.get::<_, Option<String>>(6),
                })
            }
        };
        payload.to_string()
    }
}
