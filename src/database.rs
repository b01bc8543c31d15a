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

/// How much of the server's certificate herald checks, as libpq reads `sslmode` and
/// `sslrootcert`: nothing with `disable`, `prefer` (the default) and `require` (encryption only,
/// against eavesdroppers, not against a server in the middle) unless an `sslrootcert` file is
/// given; that a trusted authority signed it with `verify-ca` or such a file; that it also names
/// the host herald connected to with `verify-full` or `sslrootcert=system`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CertificateCheck {
    #[default]
    Nothing,
    Authority,
    AuthorityAndHost,
}

/// The URL's TLS settings that the PostgreSQL client does not read itself (it knows `sslmode`
/// `disable`, `prefer` and `require` only): the check, and the PEM file of the authorities to
/// trust (`None`: the Mozilla set herald carries, also what `sslrootcert=system` names).
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
        if let Err(problem) = url.split_tls() {
            return Err(format!("the PostgreSQL URL {url} is not valid: {problem}"));
        }
        // The client's own parser is the judge; its message names the part that is wrong and
        // never repeats the URL, so the password stays out of it.
        url.config()
            .map_err(|e| format!("the PostgreSQL URL {url} is not valid: {e}"))?;
        Ok(url)
    }

    /// The URL before its query string, and the query string: from the first `?` after the
    /// credentials (the client reads those up to the first `@`, so a password may hold a `?`).
    fn base_and_query(&self) -> (&str, Option<&str>) {
        let url = self.url.as_str();
        let after_scheme = url.find("://").map_or(0, |i| i + 3);
        let after_credentials = url[after_scheme..]
            .find('@')
            .map_or(after_scheme, |i| after_scheme + i + 1);
        match url[after_credentials..].find('?') {
            Some(i) => {
                let at = after_credentials + i;
                (&url[..at], Some(&url[at + 1..]))
            }
            None => (url, None),
        }
    }

    /// The query string's `key=value` pairs, as written and split.
    fn query_pairs(&self) -> impl Iterator<Item = (&str, &str, &str)> {
        self.base_and_query()
            .1
            .into_iter()
            .flat_map(|query| query.split('&'))
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (pair, key, value)
            })
    }

    /// The URL for the client, and the TLS settings taken out of it (see `TlsSettings`), or what
    /// is wrong with them. As in libpq, a root certificate file makes any mode that encrypts check
    /// the chain, and `sslrootcert=system` means `verify-full` (a weaker mode with it is refused:
    /// the system's authorities are worth something only with the host name checked). libpq's
    /// `allow` (TLS only if the server insists) is refused: the client has no such mode, and its
    /// own parser would only say "invalid connection string".
    fn split_tls(&self) -> Result<(String, TlsSettings), String> {
        let (base, _) = self.base_and_query();
        let mut mode: Option<&str> = None;
        let mut root: Option<Option<PathBuf>> = None;
        let mut kept: Vec<&str> = Vec::new();
        for (pair, key, value) in self.query_pairs() {
            match key {
                "sslmode" => {
                    if !["disable", "prefer", "require", "verify-ca", "verify-full"]
                        .contains(&value)
                    {
                        return Err(format!(
                            "sslmode={value}: expected disable, prefer, require, verify-ca or \
                             verify-full"
                        ));
                    }
                    mode = Some(value);
                }
                "sslrootcert" if value == "system" => root = Some(None),
                "sslrootcert" => {
                    let path = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
                    root = Some(Some(PathBuf::from(path.into_owned())));
                }
                _ => kept.push(pair),
            }
        }
        if root == Some(None) && mode.is_some_and(|m| m != "verify-full") {
            return Err("sslrootcert=system takes sslmode=verify-full (or no sslmode)".into());
        }
        let check = match (mode, &root) {
            (Some("disable"), _) => CertificateCheck::Nothing,
            (Some("verify-full"), _) | (None, Some(None)) => CertificateCheck::AuthorityAndHost,
            (Some("verify-ca"), _) | (_, Some(Some(_))) => CertificateCheck::Authority,
            _ => CertificateCheck::Nothing,
        };
        // The client knows disable, prefer and require; a check of the certificate insists on TLS
        // unless the URL said prefer.
        let client_mode = match (mode, check) {
            (Some(m @ ("disable" | "prefer" | "require")), _) => Some(m),
            (_, CertificateCheck::Nothing) => mode,
            _ => Some("require"),
        };
        let client_mode = client_mode.map(|m| format!("sslmode={m}"));
        kept.extend(client_mode.as_deref());
        let tls = TlsSettings {
            check,
            root_cert: root.flatten(),
        };
        let url = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        Ok((url, tls))
    }

    /// Whether the URL says anything of TLS (`sslmode`, `sslrootcert`).
    pub fn names_tls(&self) -> bool {
        self.query_pairs()
            .any(|(_, key, _)| key == "sslmode" || key == "sslrootcert")
    }

    /// The TLS settings the client does not read itself (see `TlsSettings`).
    pub fn tls(&self) -> TlsSettings {
        self.split_tls().map(|(_, tls)| tls).unwrap_or_default()
    }

    /// The URL as given, password included: only to hand to a client or a child process.
    pub fn connection_string(&self) -> &str {
        &self.url
    }

    /// The connection settings, password included: only for connecting.
    pub fn config(&self) -> Result<postgres::Config, postgres::Error> {
        // A URL `parse` refused for its TLS settings goes as it is: the client refuses it too.
        match self.split_tls() {
            Ok((url, _)) => url.parse(),
            Err(_) => self.url.parse(),
        }
    }

    /// `postgres://user@host:port/database`, without the password or the query string.
    pub fn redacted(&self) -> String {
        // A URL whose query string is what is wrong still names its server.
        let without_query = || self.base_and_query().0.parse::<postgres::Config>().ok();
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
        let checked = |text: &str| {
            let url = PostgresUrl::parse(text).unwrap();
            (url.tls(), url.config().unwrap().get_ssl_mode())
        };
        use postgres::config::SslMode;
        let authority = |root: &str| TlsSettings {
            check: CertificateCheck::Authority,
            root_cert: Some(PathBuf::from(root)),
        };
        // As libpq: a root certificate file makes the modes that encrypt check the chain...
        assert_eq!(
            checked("postgres://a@h/d?sslmode=require&sslrootcert=/ca.pem"),
            (authority("/ca.pem"), SslMode::Require)
        );
        assert_eq!(
            checked("postgres://a@h/d?sslrootcert=/ca.pem&sslmode=prefer"),
            (authority("/ca.pem"), SslMode::Prefer)
        );
        let (disabled, mode) = checked("postgres://a@h/d?sslmode=disable&sslrootcert=/ca.pem");
        assert_eq!(
            (disabled.check, mode),
            (CertificateCheck::Nothing, SslMode::Disable)
        );
        // ...and the system's authorities mean verify-full.
        assert_eq!(
            checked("postgres://a@h/d?sslrootcert=system"),
            (
                TlsSettings {
                    check: CertificateCheck::AuthorityAndHost,
                    root_cert: None
                },
                SslMode::Require
            )
        );
        let weak = Database::parse("postgres://a@h/d?sslmode=verify-ca&sslrootcert=system");
        assert!(weak.unwrap_err().contains("verify-full"));
        // The client reads the credentials up to the first `@`: a `?` in a password is not the
        // query's.
        let odd = PostgresUrl::parse("postgres://app:20?24@h/d?sslmode=verify-full").unwrap();
        assert_eq!(odd.tls().check, CertificateCheck::AuthorityAndHost);
        assert_eq!(odd.config().unwrap().get_password(), Some(&b"20?24"[..]));
        let err = Database::parse("postgres://app:20?24@h/d?sslmode=bogus").unwrap_err();
        assert!(!err.contains("20"), "{err}");
        assert!(err.contains("postgres://app@h:5432/d"), "{err}");
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
