//! The application's own connection to the database under test, SQLite or PostgreSQL, as another
//! process would have it: tests write rows through it and look at what herald stored.
//!
//! SQL is written once, SQLite's way: `?1` parameters (numbered for PostgreSQL as herald numbers
//! scripts' queries) and quoted application tables (`"Deal"`, which both read alike). herald's own
//! tables are named as on SQLite (`herald_hooks`); on PostgreSQL the connection finds them in
//! herald's schema.

use herald::database::Database;
use herald::store::postgres::numbered_placeholders;
use herald::store::Cell;

pub enum AppDb {
    Sqlite(rusqlite::Connection),
    /// Taken only when dropped.
    Postgres(Option<postgres::Client>),
}

impl AppDb {
    pub fn open(db: &Database) -> AppDb {
        off_the_runtime(|| AppDb::connect(db))
    }

    fn connect(db: &Database) -> AppDb {
        match db {
            Database::Sqlite(path) => {
                let conn = rusqlite::Connection::open(path).unwrap();
                conn.busy_timeout(std::time::Duration::from_secs(5))
                    .unwrap();
                AppDb::Sqlite(conn)
            }
            Database::Postgres(url) => {
                let mut client = url.config().unwrap().connect(postgres::NoTls).unwrap();
                client
                    .batch_execute("SET search_path TO herald, public")
                    .unwrap();
                AppDb::Postgres(Some(client))
            }
        }
    }

    /// Runs statements without parameters (several, `;`-separated).
    pub fn batch(&mut self, sql: &str) {
        off_the_runtime(|| self.batch_here(sql))
    }

    fn batch_here(&mut self, sql: &str) {
        match self {
            AppDb::Sqlite(conn) => conn
                .execute_batch(sql)
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
            AppDb::Postgres(client) => pg(client)
                .batch_execute(sql)
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
        }
    }

    /// Runs one statement; how many rows it changed.
    pub fn execute(&mut self, sql: &str, params: &[Cell]) -> usize {
        self.try_execute(sql, params)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub fn try_execute(&mut self, sql: &str, params: &[Cell]) -> Result<usize, String> {
        off_the_runtime(|| self.execute_here(sql, params))
    }

    fn execute_here(&mut self, sql: &str, params: &[Cell]) -> Result<usize, String> {
        match self {
            AppDb::Sqlite(conn) => conn
                .execute(sql, rusqlite::params_from_iter(params))
                .map_err(|e| e.to_string()),
            AppDb::Postgres(client) => {
                let sql = numbered_placeholders(sql);
                let params: Vec<&(dyn postgres::types::ToSql + Sync)> =
                    params.iter().map(|p| p as _).collect();
                pg(client)
                    .execute(sql.as_ref(), &params)
                    .map(|n| n as usize)
                    .map_err(|e| herald::store::postgres::describe(&e))
            }
        }
    }

    /// Inserts one row and returns its id (`RETURNING id` on PostgreSQL, the rowid on SQLite).
    pub fn insert(&mut self, sql: &str, params: &[Cell]) -> i64 {
        match self {
            AppDb::Sqlite(conn) => {
                conn.execute(sql, rusqlite::params_from_iter(params))
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                conn.last_insert_rowid()
            }
            AppDb::Postgres(_) => {
                let returning = format!("{sql} RETURNING id");
                self.rows(&returning, params)[0][0].integer()
            }
        }
    }

    /// Every row of a query, as cells.
    pub fn rows(&mut self, sql: &str, params: &[Cell]) -> Vec<Vec<Cell>> {
        off_the_runtime(|| self.rows_here(sql, params))
    }

    fn rows_here(&mut self, sql: &str, params: &[Cell]) -> Vec<Vec<Cell>> {
        match self {
            AppDb::Sqlite(conn) => {
                let mut stmt = conn.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
                let columns = stmt.column_count();
                let rows = stmt
                    .query_map(rusqlite::params_from_iter(params), |r| {
                        (0..columns)
                            .map(|i| {
                                Ok(match r.get_ref(i)? {
                                    rusqlite::types::ValueRef::Null => Cell::Null,
                                    rusqlite::types::ValueRef::Integer(n) => Cell::Integer(n),
                                    rusqlite::types::ValueRef::Real(x) => Cell::Real(x),
                                    rusqlite::types::ValueRef::Text(t) => {
                                        Cell::Text(String::from_utf8_lossy(t).into_owned())
                                    }
                                    rusqlite::types::ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
                                })
                            })
                            .collect::<rusqlite::Result<Vec<Cell>>>()
                    })
                    .unwrap()
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .unwrap();
                rows
            }
            AppDb::Postgres(client) => {
                let sql = numbered_placeholders(sql);
                let params: Vec<&(dyn postgres::types::ToSql + Sync)> =
                    params.iter().map(|p| p as _).collect();
                let rows = pg(client)
                    .query(sql.as_ref(), &params)
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                rows.iter()
                    .map(|row| {
                        (0..row.len())
                            .map(|i| pg_cell(row, i))
                            .collect::<Vec<Cell>>()
                    })
                    .collect()
            }
        }
    }

    /// The one integer a query returns (a count, an id).
    pub fn integer(&mut self, sql: &str, params: &[Cell]) -> i64 {
        let rows = self.rows(sql, params);
        rows.first()
            .and_then(|r| r.first())
            .unwrap_or_else(|| panic!("{sql}: no row"))
            .integer()
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, AppDb::Postgres(_))
    }
}

impl Drop for AppDb {
    /// A PostgreSQL client blocks to close its connection: off the runtime, as every call.
    fn drop(&mut self) {
        if let AppDb::Postgres(client) = self {
            if let Some(client) = client.take() {
                off_the_runtime(move || drop(client));
            }
        }
    }
}

fn pg(client: &mut Option<postgres::Client>) -> &mut postgres::Client {
    client.as_mut().expect("present until dropped")
}

/// Runs blocking database work from a test's async body: the PostgreSQL client runs a runtime of
/// its own, which cannot start inside the test's (`block_in_place` steps out of it first; outside
/// a runtime it just runs `f`).
pub fn off_the_runtime<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// A column of a PostgreSQL row as the tests compare it: integers, floats, text, booleans.
fn pg_cell(row: &postgres::Row, i: usize) -> Cell {
    use postgres::types::Type;
    let ty = row.columns()[i].type_().clone();
    match ty {
        Type::INT2 => row
            .get::<_, Option<i16>>(i)
            .map_or(Cell::Null, |n| Cell::Integer(n.into())),
        Type::INT4 => row
            .get::<_, Option<i32>>(i)
            .map_or(Cell::Null, |n| Cell::Integer(n.into())),
        Type::INT8 => row
            .get::<_, Option<i64>>(i)
            .map_or(Cell::Null, Cell::Integer),
        Type::FLOAT4 => row
            .get::<_, Option<f32>>(i)
            .map_or(Cell::Null, |x| Cell::Real(x.into())),
        Type::FLOAT8 => row.get::<_, Option<f64>>(i).map_or(Cell::Null, Cell::Real),
        Type::BOOL => row
            .get::<_, Option<bool>>(i)
            .map_or(Cell::Null, |b| Cell::Integer(b.into())),
        Type::JSON | Type::JSONB => row
            .get::<_, Option<serde_json::Value>>(i)
            .map_or(Cell::Null, |v| Cell::Text(v.to_string())),
        Type::BYTEA => row
            .get::<_, Option<Vec<u8>>>(i)
            .map_or(Cell::Null, Cell::Blob),
        _ => row
            .get::<_, Option<String>>(i)
            .map_or(Cell::Null, Cell::Text),
    }
}

/// Reading cells back in tests.
pub trait CellValue {
    fn integer(&self) -> i64;
    fn text(&self) -> String;
}

impl CellValue for Cell {
    fn integer(&self) -> i64 {
        match self {
            Cell::Integer(n) => *n,
            other => panic!("{other:?} is not an integer"),
        }
    }

    fn text(&self) -> String {
        match self {
            Cell::Text(t) => t.clone(),
            Cell::Null => String::new(),
            other => panic!("{other:?} is not text"),
        }
    }
}
