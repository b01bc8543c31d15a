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

/// How much of the server's certificate herald checks, as libpq's `sslmode` says: `disable`,
/// `prefer` (the default) and `require` check nothing (encryption only, against eavesdroppers,
/// not against a server in the middle), `verify-ca` that a trusted authority signed it,
/// `verify-full` that too and that it names the host herald connected to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CertificateCheck {
    #[default]
    Nothing,
    Authority,
    AuthorityAndHost,
}

/// The URL's TLS settings that the PostgreSQL client does not read itself: `sslmode=verify-ca`
/// or `verify-full` (the client knows `disable`, `prefer` and `require`) and `sslrootcert`, the
/// PEM file of the authorities to trust (else the Mozilla set, or `system`: the same).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsSettings {
    pub check: CertificateCheck,
    pub root_cert: Option<PathBuf>,
}

impl PostgresUrl {
    pub fn parse(text: &str) -> Result<PostgresUrl, String> {
        let url = PostgresUrl {
            url: text.trim().to_owned(),
        };
        // libpq's `allow` (TLS only if the server insists) is not offered: the client has no such
        // mode, and its own parser would only say "invalid connection string".
        if let Some(mode) = url.query_value("sslmode") {
            if !["disable", "prefer", "require", "verify-ca", "verify-full"].contains(&mode) {
                return Err(format!(
                    "the PostgreSQL URL {url} is not valid: sslmode={mode}: expected disable, \
                     prefer, require, verify-ca or verify-full"
                ));
            }
        }
        // The client's own parser is the judge; its message names the part that is wrong and
        // never repeats the URL, so the password stays out of it.
        url.config()
            .map_err(|e| format!("the PostgreSQL URL {url} is not valid: {e}"))?;
        Ok(url)
    }

    /// The value of `key` in the query string, as written.
    fn query_value(&self, key: &str) -> Option<&str> {
        let (_, query) = self.url.split_once('?')?;
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, value)| value)
    }

    /// The URL for the client, and the TLS settings taken out of it (see `TlsSettings`).
    fn split_tls(&self) -> (String, TlsSettings) {
        let Some((base, query)) = self.url.split_once('?') else {
            return (self.url.clone(), TlsSettings::default());
        };
        let mut tls = TlsSettings::default();
        let mut kept: Vec<&str> = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match (key, value) {
                ("sslmode", "verify-ca") => tls.check = CertificateCheck::Authority,
                ("sslmode", "verify-full") => tls.check = CertificateCheck::AuthorityAndHost,
                ("sslrootcert", "system") => tls.root_cert = None,
                ("sslrootcert", path) => {
                    let path = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
                    tls.root_cert = Some(PathBuf::from(path.into_owned()));
                }
                _ => kept.push(pair),
            }
        }
        if tls.check != CertificateCheck::Nothing {
            kept.push("sslmode=require");
        }
        if kept.is_empty() {
            (base.to_owned(), tls)
        } else {
            (format!("{base}?{}", kept.join("&")), tls)
        }
    }

    /// The TLS settings the client does not read itself (see `TlsSettings`).
    pub fn tls(&self) -> TlsSettings {
        self.split_tls().1
    }

    /// The URL as given, password included: only to hand to a client or a child process.
    pub fn connection_string(&self) -> &str {
        &self.url
    }

    /// The connection settings, password included: only for connecting.
    pub fn config(&self) -> Result<postgres::Config, postgres::Error> {
        self.split_tls().0.parse()
    }

    /// `postgres://user@host:port/database`, without the password or the query string.
    pub fn redacted(&self) -> String {
        // A URL whose query string is what is wrong still names its server.
        let without_query = || self.url.split_once('?')?.0.parse::<postgres::Config>().ok();
        let Some(config) = self.config().ok().or_else(without_query) else {
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
    fn libpqs_certificate_checks_are_read_and_the_rest_goes_to_the_client() {
        let url = PostgresUrl::parse(
            "postgres://app:s3cret@db.example/crm?sslmode=verify-full&sslrootcert=%2Fetc%2Fca%20x.pem\
             &application_name=crm",
        )
        .unwrap();
        assert_eq!(
            url.tls(),
            TlsSettings {
                check: CertificateCheck::AuthorityAndHost,
                root_cert: Some(PathBuf::from("/etc/ca x.pem")),
            }
        );
        let config = url.config().unwrap();
        assert_eq!(config.get_ssl_mode(), postgres::config::SslMode::Require);
        assert_eq!(config.get_application_name(), Some("crm"));
        assert_eq!(
            PostgresUrl::parse("postgres://a@h/d?sslmode=verify-ca&sslrootcert=system")
                .unwrap()
                .tls(),
            TlsSettings {
                check: CertificateCheck::Authority,
                root_cert: None,
            }
        );
        let plain = PostgresUrl::parse("postgres://a@h/d?sslmode=require").unwrap();
        assert_eq!(plain.tls(), TlsSettings::default());
        assert_eq!(
            plain.config().unwrap().get_ssl_mode(),
            postgres::config::SslMode::Require
        );
        let err = Database::parse("postgres://app:s3cret@h/d?sslmode=allow").unwrap_err();
        assert!(
            err.contains("sslmode=allow") && !err.contains("s3cret"),
            "{err}"
        );
        assert!(err.contains("postgres://app@h:5432/d"), "{err}");
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
