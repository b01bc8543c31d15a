//! Where the application's data and herald's own tables live: one SQLite file (the embedded
//! default), or a PostgreSQL database named by a `postgres://` URL. Parsed from `--db`,
//! `HERALD_DB` or the config file's `db`; shown everywhere without its password.

use std::fmt;
use std::path::{Path, PathBuf};

/// The database herald works on.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    /// An SQLite file: the application's tables and herald's (`herald_*`) in one file.
    Sqlite(PathBuf),
    /// A PostgreSQL database: the application's tables where the connection's `search_path` finds
    /// them, herald's in a schema of their own.
    Postgres(PostgresUrl),
}

/// A `postgres://` or `postgresql://` URL (or its `key=value` form), checked when parsed. Its
/// password never leaves it except to connect: `Display` and `Debug` leave it out.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl {
    url: String,
}

impl Database {
    /// `postgres://...` and `postgresql://...` name a PostgreSQL database; anything else is the
    /// path of an SQLite file.
    pub fn parse(text: &str) -> Result<Database, String> {
        let trimmed = text.trim();
        let lower = trimmed.to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            return PostgresUrl::parse(trimmed).map(Database::Postgres);
        }
        if trimmed.is_empty() {
            return Err("the database is empty: give an SQLite file or a postgres:// URL".into());
        }
        Ok(Database::Sqlite(PathBuf::from(text)))
    }

    /// The application's schema script herald applies at every start, in the scripts folder: the
    /// same demo CRM in each database's dialect.
    pub fn schema_file(&self) -> &'static str {
        match self {
            Database::Sqlite(_) => "schema.sql",
            Database::Postgres(_) => "schema.postgres.sql",
        }
    }

    /// What `--db` takes to name this database (the password included).
    pub fn as_argument(&self) -> std::ffi::OsString {
        match self {
            Database::Sqlite(path) => path.as_os_str().to_owned(),
            Database::Postgres(url) => url.connection_string().into(),
        }
    }

    /// The SQLite file, if the database is one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            Database::Sqlite(path) => Some(path),
            Database::Postgres(_) => None,
        }
    }

    /// Where herald keeps a file of its own that belongs with this database (the generated API
    /// token, the generated secret key): beside an SQLite file (`herald.db.api-token`), or in the
    /// working directory for PostgreSQL (`herald.api-token`), which has no file to sit beside.
    pub fn companion_file(&self, suffix: &str) -> PathBuf {
        match self {
            Database::Sqlite(path) => {
                let mut name = path.as_os_str().to_owned();
                name.push(".");
                name.push(suffix);
                PathBuf::from(name)
            }
            Database::Postgres(_) => PathBuf::from(format!("herald.{suffix}")),
        }
    }
}

impl From<PathBuf> for Database {
    fn from(path: PathBuf) -> Database {
        Database::Sqlite(path)
    }
}

impl From<&Path> for Database {
    fn from(path: &Path) -> Database {
        Database::Sqlite(path.to_owned())
    }
}

impl From<&str> for Database {
    /// A path or URL as `parse` reads it; a URL that does not parse is kept as a file name, so
    /// use `parse` where the text comes from a user.
    fn from(text: &str) -> Database {
        Database::parse(text).unwrap_or_else(|_| Database::Sqlite(PathBuf::from(text)))
    }
}

impl fmt::Display for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Database::Sqlite(path) => write!(f, "{}", path.display()),
            Database::Postgres(url) => write!(f, "{url}"),
        }
    }
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl PostgresUrl {
    pub fn parse(text: &str) -> Result<PostgresUrl, String> {
        let url = PostgresUrl {
            url: text.trim().to_owned(),
        };
        // The client's own parser is the judge; its message names the part that is wrong and
        // never repeats the URL, so the password stays out of it.
        url.config()
            .map_err(|e| format!("the PostgreSQL URL {url} is not valid: {e}"))?;
        Ok(url)
    }

    /// The URL as given, password included: only to hand to a client or a child process.
    pub fn connection_string(&self) -> &str {
        &self.url
    }

    /// The connection settings, password included: only for connecting.
    pub fn config(&self) -> Result<postgres::Config, postgres::Error> {
        self.url.parse()
    }

    /// `postgres://user@host:port/database`, without the password or the query string.
    pub fn redacted(&self) -> String {
        let Ok(config) = self.config() else {
            return "postgres://(unparsable URL)".into();
        };
        let user = config.get_user().unwrap_or("");
        let host = config
            .get_hosts()
            .first()
            .map(|h| match h {
                postgres::config::Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .unwrap_or_else(|| "localhost".into());
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let db = config.get_dbname().unwrap_or(user);
        let at = if user.is_empty() { "" } else { "@" };
        format!("postgres://{user}{at}{host}:{port}/{db}")
    }
}

impl fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgresUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_postgresql_and_anything_else_is_a_file() {
        assert_eq!(
            Database::parse("herald.db").unwrap(),
            Database::Sqlite("herald.db".into())
        );
        for text in [
            "postgres://app:s3cret@db.example:5433/crm",
            "postgresql://app:s3cret@db.example:5433/crm?sslmode=disable",
        ] {
            let db = Database::parse(text).unwrap();
            assert!(matches!(db, Database::Postgres(_)), "{text}");
            assert_eq!(db.to_string(), "postgres://app@db.example:5433/crm");
            assert!(!format!("{db:?}").contains("s3cret"));
        }
    }

    #[test]
    fn a_bad_url_is_refused_without_its_password() {
        let err = Database::parse("postgres://app:s3cret@db.example:notaport/crm").unwrap_err();
        assert!(err.contains("not valid"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn companion_files_sit_beside_a_file_or_in_the_working_directory() {
        let file = Database::parse("data/crm.db").unwrap();
        assert_eq!(
            file.companion_file("api-token"),
            PathBuf::from("data/crm.db.api-token")
        );
        let server = Database::parse("postgres://app@localhost/crm").unwrap();
        assert_eq!(
            server.companion_file("secret-key"),
            PathBuf::from("herald.secret-key")
        );
    }
}
