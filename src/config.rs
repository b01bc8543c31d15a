//! Settings. Flags win over environment variables, variables over the TOML file, the file over the
//! built-in defaults (README.md documents every key).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use crate::database::Database;

/// What the command line (flag or its environment variable, as clap resolves them) says.
#[derive(Debug, Default, Clone)]
pub struct CommandLine {
    /// An SQLite file or a `postgres://` URL.
    pub db: Option<String>,
    pub scripts: Option<PathBuf>,
    pub listen: Option<String>,
    pub config: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub db: Database,
    pub scripts: PathBuf,
    pub listen: String,
    /// `None`: a token is generated on first start and kept beside the database. Its role is admin.
    pub api_token: Option<String>,
    /// More tokens, each with a role: integrations that only subscribe get a token that can do
    /// nothing else.
    pub api_tokens: Vec<ApiToken>,
    /// Reload scripts when a file of the scripts folder changes.
    pub watch_scripts: bool,
    /// The key (base64, 32 bytes) that seals hooks' secrets at rest; `HERALD_SECRET_KEY`.
    pub secret_key: Option<String>,
    /// Where the key is kept when not given; default `<db>.secret-key` (`herald.secret-key` in the
    /// working directory on PostgreSQL), generated on first start.
    pub secret_key_file: Option<PathBuf>,
    /// How herald uses a PostgreSQL database (ignored on SQLite).
    pub postgres: PostgresSettings,
    /// This process's name among the herald processes of its database; `None`: the host's name
    /// and the listen port.
    pub node_name: Option<String>,
    pub delivery: DeliverySettings,
    pub sandbox: SandboxLimits,
    pub tracking: TrackingSettings,
    pub retention: RetentionSettings,
    /// Requests per second each token (and the admin pages' session) may make; `None`: unlimited.
    pub rate_limit: Option<RateLimit>,
    /// Reverse proxies whose `X-Forwarded-For` herald believes, to know a client's address (for
    /// the limit on wrong tokens). Empty: the TCP peer is the client.
    pub trusted_proxies: Vec<IpNet>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: u32,
    /// Requests allowed at once after a quiet spell.
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            per_second: 50,
            burst: 100,
        }
    }
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything.
    Admin,
    /// The REST hooks endpoints only (`/EPT_...`): subscribe, unsubscribe, perform-list.
    Subscribe,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    /// Whose token it is.
    pub name: String,
    pub token: String,
    pub role: Role,
}

/// How herald uses a PostgreSQL database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresSettings {
    /// The schema of herald's own tables, created and migrated by herald.
    pub schema: String,
    /// The most connections herald's pool opens (scripts' connections apart).
    pub pool_size: u32,
    /// A URL that logs in as the read-only role scripts query through. Without it herald creates
    /// and manages that role itself (`<schema>_script`), which needs a role that may create roles.
    pub script_url: Option<crate::database::PostgresUrl>,
    /// How long another node may take to become the change log's consumer when the consumer's
    /// machine vanishes without closing its connection (a process that dies is replaced sooner).
    pub takeover: Duration,
}

/// The bounds of `postgres.takeover_seconds`: below 4 s the server's keepalives (whole seconds)
/// cannot fit; above 10 minutes nobody would call it a takeover.
pub const TAKEOVER_SECONDS: std::ops::RangeInclusive<u64> = 4..=600;

impl Default for PostgresSettings {
    fn default() -> Self {
        PostgresSettings {
            schema: "herald".into(),
            pool_size: 10,
            script_url: None,
            takeover: Duration::from_secs(6),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RetentionSettings {
    /// Events (with their deliveries and attempts) and script failures older than this are deleted.
    pub max_age: Duration,
    /// How often the clean-up runs.
    pub interval: Duration,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            max_age: Duration::from_secs(28 * 24 * 3600),
            interval: Duration::from_secs(600),
        }
    }
}

#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// Delay before the second attempt, the third, and so on; its length is the number of retries.
    pub retry_schedule: Vec<Duration>,
    pub timeout: Duration,
    /// Ranges a target may resolve to although they are private, loopback or link-local.
    pub allow_targets: Vec<IpNet>,
    /// Requests in flight at once, over all targets.
    pub max_in_flight: usize,
    /// Requests in flight at once to one hook, so that a slow target cannot take every slot.
    pub max_in_flight_per_hook: usize,
    /// The longest `Retry-After` herald honours; a longer one is cut to this.
    pub max_retry_after: Duration,
    /// A hook whose attempts have all failed for this long is disabled; `None`: never.
    pub disable_failing_after: Option<Duration>,
    /// Refuse plain http targets, at subscription and at delivery.
    pub https_only: bool,
}

#[derive(Debug, Clone)]
pub struct SandboxLimits {
    pub max_operations: u64,
    pub max_call_levels: usize,
    pub max_expr_depth: usize,
    pub max_string_size: usize,
    pub max_array_size: usize,
    pub max_map_size: usize,
    /// The largest payload (JSON bytes) a body script may return: a bigger one fails the event.
    pub max_payload_bytes: usize,
    /// The most events one run of a notification script may fire: past it that change fails.
    pub max_events_per_change: usize,
    /// Wall-clock budget of one script run, database queries included.
    pub time_budget: Duration,
}

#[derive(Debug, Clone)]
pub struct TrackingSettings {
    /// How often the change log is looked at when nothing woke herald. Cheap: one `PRAGMA data_version`.
    pub poll_interval: Duration,
    /// Changes read and committed together.
    pub batch_size: usize,
    /// Threads that render a batch's scripts together (in one snapshot); `None`: the database's
    /// own default (`Config::render_threads`).
    pub render_threads: Option<usize>,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            retry_schedule: parse_retry_schedule(DEFAULT_RETRY_SCHEDULE).expect("default schedule"),
            timeout: Duration::from_secs(15),
            allow_targets: Vec::new(),
            max_in_flight: 64,
            max_in_flight_per_hook: 16,
            max_retry_after: Duration::from_secs(3600),
            disable_failing_after: Some(Duration::from_secs(5 * 24 * 3600)),
            https_only: false,
        }
    }
}

impl Default for SandboxLimits {
    fn default() -> Self {
        SandboxLimits {
            max_operations: 5_000_000,
            max_call_levels: 32,
            max_expr_depth: 64,
            max_string_size: 1 << 20,
            max_array_size: 10_000,
            max_map_size: 10_000,
            max_payload_bytes: 512 * 1024,
            max_events_per_change: 100,
            time_budget: Duration::from_secs(2),
        }
    }
}

impl Default for TrackingSettings {
    fn default() -> Self {
        TrackingSettings {
            poll_interval: Duration::from_millis(1),
            batch_size: 500,
            render_threads: None,
        }
    }
}

pub const DEFAULT_RETRY_SCHEDULE: &str = "5,300,1800,7200,18000,36000,36000";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{name}: {message}")]
    Invalid { name: String, message: String },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    db: Option<String>,
    scripts: Option<PathBuf>,
    listen: Option<String>,
    api_token: Option<String>,
    #[serde(default)]
    api_tokens: Vec<ApiToken>,
    watch_scripts: Option<bool>,
    secret_key_file: Option<PathBuf>,
    #[serde(default)]
    delivery: FileDelivery,
    #[serde(default)]
    sandbox: FileSandbox,
    #[serde(default)]
    tracking: FileTracking,
    #[serde(default)]
    retention: FileRetention,
    #[serde(default)]
    api: FileApi,
    #[serde(default)]
    postgres: FilePostgres,
    node_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePostgres {
    schema: Option<String>,
    pool_size: Option<u32>,
    script_url: Option<String>,
    takeover_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileApi {
    /// 0: unlimited.
    rate_limit_per_second: Option<u32>,
    rate_limit_burst: Option<u32>,
    trusted_proxies: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRetention {
    days: Option<f64>,
    interval_secs: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDelivery {
    retry_schedule: Option<Vec<f64>>,
    timeout_secs: Option<f64>,
    allow_targets: Option<Vec<String>>,
    max_in_flight: Option<usize>,
    max_in_flight_per_hook: Option<usize>,
    max_retry_after_secs: Option<f64>,
    /// 0: never.
    disable_failing_after_days: Option<f64>,
    https_only: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSandbox {
    max_operations: Option<u64>,
    max_call_levels: Option<usize>,
    max_expr_depth: Option<usize>,
    max_string_size: Option<usize>,
    max_array_size: Option<usize>,
    max_map_size: Option<usize>,
    max_payload_bytes: Option<usize>,
    max_events_per_change: Option<usize>,
    time_budget_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTracking {
    poll_interval_ms: Option<u64>,
    batch_size: Option<usize>,
    render_threads: Option<usize>,
}

impl Config {
    /// Built-in defaults everywhere; what tests and embedders start from.
    pub fn with_paths(db: impl Into<Database>, scripts: impl Into<PathBuf>) -> Config {
        Config {
            db: db.into(),
            scripts: scripts.into(),
            listen: "127.0.0.1:8080".into(),
            api_token: None,
            api_tokens: Vec::new(),
            watch_scripts: true,
            secret_key: None,
            secret_key_file: None,
            postgres: PostgresSettings::default(),
            node_name: None,
            delivery: DeliverySettings::default(),
            sandbox: SandboxLimits::default(),
            tracking: TrackingSettings::default(),
            retention: RetentionSettings::default(),
            rate_limit: Some(RateLimit::default()),
            trusted_proxies: Vec::new(),
        }
    }

    /// How many threads render a batch's scripts: one on SQLite, whose queries are calls inside
    /// the process; four on PostgreSQL, where each query is a round trip to the server and one
    /// thread would spend a batch waiting (see `tracking::render`).
    pub fn render_threads(&self) -> usize {
        self.tracking.render_threads.unwrap_or(match self.db {
            Database::Sqlite(_) => 1,
            Database::Postgres(_) => 4,
        })
    }

    /// Layers the command line over the process environment over the config file over the defaults.
    pub fn load(cli: &CommandLine) -> Result<Config, ConfigError> {
        Self::load_with_env(cli, |name| std::env::var(name).ok())
    }

    pub fn load_with_env(
        cli: &CommandLine,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let file = match &cli.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let mut config = Config::with_paths(PathBuf::from("herald.db"), "scripts");
        let database = |name: &str, text: &str| {
            Database::parse(text).map_err(|message| ConfigError::Invalid {
                name: name.into(),
                message,
            })
        };
        if let Some(v) = &file.db {
            config.db = database("db", v)?;
        }
        if let Some(v) = file.scripts {
            config.scripts = v;
        }
        if let Some(v) = file.listen {
            config.listen = v;
        }
        config.api_token = file.api_token;
        for token in &file.api_tokens {
            if token.token.trim().len() < 16 {
                return Err(ConfigError::Invalid {
                    name: format!("api_tokens ({})", token.name),
                    message: "a token must be at least 16 characters".into(),
                });
            }
        }
        // A subscription belongs to the token that made it, by name: two tokens of one name would
        // remove each other's, and "default" is the name of the admin token of HERALD_API_TOKEN.
        let mut names = std::collections::BTreeSet::from(["default"]);
        for token in &file.api_tokens {
            if token.name.trim().is_empty() || !names.insert(token.name.as_str()) {
                return Err(ConfigError::Invalid {
                    name: format!("api_tokens ({})", token.name),
                    message: "each token needs a name of its own (\"default\" is taken by the \
                              main token)"
                        .into(),
                });
            }
        }
        config.api_tokens = file.api_tokens;
        config.watch_scripts = file.watch_scripts.unwrap_or(true);
        config.secret_key_file = file.secret_key_file;
        config.node_name = env("HERALD_NODE_NAME")
            .or(file.node_name)
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty());
        config.apply_postgres_section(file.postgres, &env)?;
        config.apply_file_sections(file.delivery, file.sandbox, file.tracking)?;
        if let Some(days) = file.retention.days {
            config.retention.max_age =
                seconds(days * 86_400.0).map_err(|message| ConfigError::Invalid {
                    name: "retention.days".into(),
                    message,
                })?;
        }
        if let Some(v) = file.retention.interval_secs {
            config.retention.interval = seconds(v).map_err(|message| ConfigError::Invalid {
                name: "retention.interval_secs".into(),
                message,
            })?;
        }

        let mut rate_limit = RateLimit::default();
        if let Some(v) = file.api.rate_limit_burst {
            rate_limit.burst = v;
        }
        let per_second = match env("HERALD_RATE_LIMIT") {
            Some(v) => v.trim().parse::<u32>().map_err(|_| ConfigError::Invalid {
                name: "HERALD_RATE_LIMIT".into(),
                message: format!(
                    "'{v}' is not a whole number of requests per second (0: unlimited)"
                ),
            })?,
            None => file
                .api
                .rate_limit_per_second
                .unwrap_or(rate_limit.per_second),
        };
        if let Some(v) = &file.api.trusted_proxies {
            config.trusted_proxies =
                parse_ranges(v.iter().map(String::as_str)).map_err(|message| {
                    ConfigError::Invalid {
                        name: "api.trusted_proxies".into(),
                        message,
                    }
                })?;
        }
        if let Some(v) = env("HERALD_TRUSTED_PROXIES") {
            config.trusted_proxies =
                parse_ranges(v.split(',')).map_err(|message| ConfigError::Invalid {
                    name: "HERALD_TRUSTED_PROXIES".into(),
                    message,
                })?;
        }
        config.rate_limit = (per_second > 0).then_some(RateLimit {
            per_second,
            burst: rate_limit.burst.max(1),
        });

        if let Some(v) = env("HERALD_API_TOKEN").filter(|v| !v.is_empty()) {
            config.api_token = Some(v);
        }
        if let Some(v) = env("HERALD_SECRET_KEY").filter(|v| !v.is_empty()) {
            config.secret_key = Some(v);
        }
        if let Some(v) = env("HERALD_RETRY_SCHEDULE") {
            config.delivery.retry_schedule =
                parse_retry_schedule(&v).map_err(|message| ConfigError::Invalid {
                    name: "HERALD_RETRY_SCHEDULE".into(),
                    message,
                })?;
        }
        if let Some(v) = env("HERALD_HTTPS_ONLY") {
            config.delivery.https_only = match v.trim() {
                "1" | "true" | "yes" => true,
                "0" | "false" | "no" | "" => false,
                other => {
                    return Err(ConfigError::Invalid {
                        name: "HERALD_HTTPS_ONLY".into(),
                        message: format!("'{other}' is not true or false"),
                    })
                }
            };
        }
        if let Some(v) = env("HERALD_RETENTION_DAYS") {
            let days: f64 = v.trim().parse().map_err(|_| ConfigError::Invalid {
                name: "HERALD_RETENTION_DAYS".into(),
                message: format!("'{}' is not a number of days", v.trim()),
            })?;
            config.retention.max_age =
                seconds(days * 86_400.0).map_err(|message| ConfigError::Invalid {
                    name: "HERALD_RETENTION_DAYS".into(),
                    message,
                })?;
        }
        if let Some(v) = env("HERALD_DELIVERY_TIMEOUT") {
            config.delivery.timeout =
                parse_seconds(&v).map_err(|message| ConfigError::Invalid {
                    name: "HERALD_DELIVERY_TIMEOUT".into(),
                    message,
                })?;
        }
        if let Some(v) = env("HERALD_ALLOW_TARGETS") {
            config.delivery.allow_targets =
                parse_ranges(v.split(',')).map_err(|message| ConfigError::Invalid {
                    name: "HERALD_ALLOW_TARGETS".into(),
                    message,
                })?;
        }

        if let Some(v) = &cli.db {
            config.db = database("--db (HERALD_DB)", v)?;
        }
        if let Some(v) = &cli.scripts {
            config.scripts = v.clone();
        }
        if let Some(v) = &cli.listen {
            config.listen = v.clone();
        }
        Ok(config)
    }

    fn apply_postgres_section(
        &mut self,
        file: FilePostgres,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        let p = &mut self.postgres;
        if let Some(schema) = env("HERALD_PG_SCHEMA").or(file.schema) {
            if !is_plain_identifier(&schema) {
                return Err(ConfigError::Invalid {
                    name: "postgres.schema (HERALD_PG_SCHEMA)".into(),
                    message: format!(
                        "'{schema}' is not a plain lower-case name (letters, digits and _, \
                         starting with a letter, at most 40 characters)"
                    ),
                });
            }
            p.schema = schema;
        }
        if let Some(size) = file.pool_size {
            p.pool_size = size.clamp(2, 1000);
        }
        let takeover = match env("HERALD_PG_TAKEOVER_SECONDS") {
            Some(v) => Some(v.trim().parse::<u64>().map_err(|_| ConfigError::Invalid {
                name: "postgres.takeover_seconds (HERALD_PG_TAKEOVER_SECONDS)".into(),
                message: format!("'{}' is not a whole number of seconds", v.trim()),
            })?),
            None => file.takeover_seconds,
        };
        if let Some(takeover) = takeover {
            if !TAKEOVER_SECONDS.contains(&takeover) {
                return Err(ConfigError::Invalid {
                    name: "postgres.takeover_seconds (HERALD_PG_TAKEOVER_SECONDS)".into(),
                    message: format!(
                        "{takeover} is not between {} and {} seconds",
                        TAKEOVER_SECONDS.start(),
                        TAKEOVER_SECONDS.end()
                    ),
                });
            }
            p.takeover = Duration::from_secs(takeover);
        }
        if let Some(url) = file.script_url {
            p.script_url = Some(
                crate::database::PostgresUrl::parse(&url).map_err(|message| {
                    ConfigError::Invalid {
                        name: "postgres.script_url".into(),
                        message,
                    }
                })?,
            );
        }
        Ok(())
    }

    fn apply_file_sections(
        &mut self,
        delivery: FileDelivery,
        sandbox: FileSandbox,
        tracking: FileTracking,
    ) -> Result<(), ConfigError> {
        let invalid = |name: &str, message: String| ConfigError::Invalid {
            name: name.into(),
            message,
        };
        let d = &mut self.delivery;
        if let Some(v) = delivery.retry_schedule {
            d.retry_schedule = v
                .iter()
                .map(|s| seconds(*s))
                .collect::<Result<_, _>>()
                .map_err(|m| invalid("delivery.retry_schedule", m))?;
        }
        if let Some(v) = delivery.timeout_secs {
            d.timeout = seconds(v).map_err(|m| invalid("delivery.timeout_secs", m))?;
        }
        if let Some(v) = delivery.allow_targets {
            d.allow_targets = parse_ranges(v.iter().map(String::as_str))
                .map_err(|m| invalid("delivery.allow_targets", m))?;
        }
        if let Some(v) = delivery.max_in_flight {
            d.max_in_flight = v.max(1);
        }
        if let Some(v) = delivery.max_in_flight_per_hook {
            d.max_in_flight_per_hook = v.max(1);
        }
        if let Some(v) = delivery.https_only {
            d.https_only = v;
        }
        if let Some(days) = delivery.disable_failing_after_days {
            d.disable_failing_after = if days == 0.0 {
                None
            } else {
                Some(
                    seconds(days * 86_400.0)
                        .map_err(|m| invalid("delivery.disable_failing_after_days", m))?,
                )
            };
        }
        if let Some(v) = delivery.max_retry_after_secs {
            d.max_retry_after =
                seconds(v).map_err(|m| invalid("delivery.max_retry_after_secs", m))?;
        }
        let s = &mut self.sandbox;
        s.max_operations = sandbox.max_operations.unwrap_or(s.max_operations);
        s.max_call_levels = sandbox.max_call_levels.unwrap_or(s.max_call_levels);
        s.max_expr_depth = sandbox.max_expr_depth.unwrap_or(s.max_expr_depth);
        s.max_string_size = sandbox.max_string_size.unwrap_or(s.max_string_size);
        s.max_array_size = sandbox.max_array_size.unwrap_or(s.max_array_size);
        s.max_map_size = sandbox.max_map_size.unwrap_or(s.max_map_size);
        s.max_payload_bytes = sandbox.max_payload_bytes.unwrap_or(s.max_payload_bytes);
        s.max_events_per_change = sandbox
            .max_events_per_change
            .unwrap_or(s.max_events_per_change)
            .max(1);
        if let Some(ms) = sandbox.time_budget_ms {
            s.time_budget = Duration::from_millis(ms);
        }
        let t = &mut self.tracking;
        if let Some(ms) = tracking.poll_interval_ms {
            t.poll_interval = Duration::from_millis(ms.max(1));
        }
        if let Some(n) = tracking.batch_size {
            t.batch_size = n.max(1);
        }
        if let Some(n) = tracking.render_threads {
            t.render_threads = Some(n.clamp(1, 64));
        }
        Ok(())
    }
}

/// A name herald can put in SQL unquoted and build other names from (`herald` -> `herald_script`).
fn is_plain_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 40
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

fn seconds(value: f64) -> Result<Duration, String> {
    if (0.0..1e9).contains(&value) {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(format!("{value} is not a number of seconds"))
    }
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("'{}' is not a number of seconds", text.trim()))?;
    seconds(value)
}

/// `"5,300,1800"` -> 5 s, 5 min, 30 min. Fractions are allowed (`0.2`), an empty list means no retry.
pub fn parse_retry_schedule(text: &str) -> Result<Vec<Duration>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(parse_seconds)
        .collect()
}

/// CIDR ranges (`127.0.0.0/8`) or single addresses (`10.0.0.7`).
pub fn parse_ranges<'a>(parts: impl Iterator<Item = &'a str>) -> Result<Vec<IpNet>, String> {
    parts
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            part.parse::<IpNet>()
                .or_else(|_| part.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("'{part}' is not a CIDR range such as 127.0.0.0/8"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(cli: CommandLine, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load_with_env(&cli, |name| env.get(name).cloned())
    }

    #[test]
    fn defaults_match_the_contract() {
        let config = load(CommandLine::default(), &[]).unwrap();
        assert_eq!(config.db, Database::Sqlite("herald.db".into()));
        assert_eq!(config.postgres.schema, "herald");
        assert_eq!(config.scripts, PathBuf::from("scripts"));
        assert_eq!(config.listen, "127.0.0.1:8080");
        let secs: Vec<u64> = config
            .delivery
            .retry_schedule
            .iter()
            .map(|d| d.as_secs())
            .collect();
        assert_eq!(secs, [5, 300, 1800, 7200, 18000, 36000, 36000]);
        assert_eq!(config.delivery.timeout, Duration::from_secs(15));
        assert!(config.delivery.allow_targets.is_empty());
    }

    #[test]
    fn flags_win_over_variables_and_variables_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("herald.toml");
        std::fs::write(
            &file,
            "db = 'from-file.db'\nlisten = '127.0.0.1:9000'\n[delivery]\ntimeout_secs = 3\nretry_schedule = [1, 2]\n",
        )
        .unwrap();
        let cli = CommandLine {
            db: Some("from-flag.db".into()),
            config: Some(file),
            ..Default::default()
        };
        let config = load(cli, &[("HERALD_DELIVERY_TIMEOUT", "7")]).unwrap();
        assert_eq!(config.db, Database::Sqlite("from-flag.db".into()));
        assert_eq!(config.listen, "127.0.0.1:9000");
        assert_eq!(config.delivery.timeout, Duration::from_secs(7));
        assert_eq!(config.delivery.retry_schedule.len(), 2);
    }

    #[test]
    fn retention_and_disabling_windows_come_from_the_file_and_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("herald.toml");
        std::fs::write(
            &file,
            "watch_scripts = false\n[delivery]\ndisable_failing_after_days = 0\n[retention]\ndays = 7\ninterval_secs = 60\n",
        )
        .unwrap();
        let cli = CommandLine {
            config: Some(file),
            ..Default::default()
        };
        let config = load(cli.clone(), &[]).unwrap();
        assert!(!config.watch_scripts);
        assert_eq!(config.delivery.disable_failing_after, None);
        assert_eq!(config.retention.max_age, Duration::from_secs(7 * 86_400));
        assert_eq!(config.retention.interval, Duration::from_secs(60));
        let config = load(cli, &[("HERALD_RETENTION_DAYS", "1.5")]).unwrap();
        assert_eq!(config.retention.max_age, Duration::from_secs(129_600));
        let defaults = load(CommandLine::default(), &[]).unwrap();
        assert_eq!(
            defaults.delivery.disable_failing_after,
            Some(Duration::from_secs(5 * 86_400))
        );
        assert_eq!(defaults.retention.max_age, Duration::from_secs(28 * 86_400));
    }

    #[test]
    fn the_takeover_time_comes_from_the_file_or_the_environment_within_its_bounds() {
        let defaults = load(CommandLine::default(), &[]).unwrap();
        assert_eq!(defaults.postgres.takeover, Duration::from_secs(6));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("herald.toml");
        std::fs::write(&file, "[postgres]\ntakeover_seconds = 20\n").unwrap();
        let cli = CommandLine {
            config: Some(file),
            ..Default::default()
        };
        let config = load(cli.clone(), &[]).unwrap();
        assert_eq!(config.postgres.takeover, Duration::from_secs(20));
        let config = load(cli, &[("HERALD_PG_TAKEOVER_SECONDS", "9")]).unwrap();
        assert_eq!(config.postgres.takeover, Duration::from_secs(9));
        for wrong in ["3", "601", "five", "2.5"] {
            let error = load(
                CommandLine::default(),
                &[("HERALD_PG_TAKEOVER_SECONDS", wrong)],
            )
            .unwrap_err()
            .to_string();
            assert!(error.contains("HERALD_PG_TAKEOVER_SECONDS"), "{error}");
            assert!(error.contains(wrong), "{error}");
        }
    }

    #[test]
    fn the_rate_limit_comes_from_the_file_and_the_environment_and_0_turns_it_off() {
        let defaults = load(CommandLine::default(), &[]).unwrap();
        assert_eq!(defaults.rate_limit, Some(RateLimit::default()));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("herald.toml");
        std::fs::write(
            &file,
            "[api]\nrate_limit_per_second = 5\nrate_limit_burst = 20\n",
        )
        .unwrap();
        let cli = CommandLine {
            config: Some(file),
            ..Default::default()
        };
        let config = load(cli.clone(), &[]).unwrap();
        assert_eq!(
            config.rate_limit,
            Some(RateLimit {
                per_second: 5,
                burst: 20
            })
        );
        let config = load(cli, &[("HERALD_RATE_LIMIT", "0")]).unwrap();
        assert_eq!(config.rate_limit, None);
        let config = load(
            CommandLine::default(),
            &[("HERALD_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.7")],
        )
        .unwrap();
        assert_eq!(
            config.trusted_proxies,
            vec![
                "10.0.0.0/8".parse::<IpNet>().unwrap(),
                "192.168.1.7/32".parse::<IpNet>().unwrap()
            ]
        );
        let err = load(CommandLine::default(), &[("HERALD_RATE_LIMIT", "lots")]).unwrap_err();
        assert!(
            err.to_string().starts_with("HERALD_RATE_LIMIT: 'lots'"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_name_what_is_wrong() {
        let err = load(
            CommandLine::default(),
            &[("HERALD_RETRY_SCHEDULE", "5,soon")],
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "HERALD_RETRY_SCHEDULE: 'soon' is not a number of seconds"
        );
        let err = load(
            CommandLine::default(),
            &[("HERALD_ALLOW_TARGETS", "10.0.0.0/33")],
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("'10.0.0.0/33' is not a CIDR range"),
            "{err}"
        );
    }

    #[test]
    fn scripts_render_on_one_thread_on_sqlite_and_four_on_postgresql_unless_told() {
        let sqlite = load(CommandLine::default(), &[]).unwrap();
        assert_eq!(sqlite.render_threads(), 1);
        let postgres = load(
            CommandLine {
                db: Some("postgres://app@localhost/crm".into()),
                ..Default::default()
            },
            &[],
        )
        .unwrap();
        assert_eq!(postgres.render_threads(), 4);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("herald.toml");
        std::fs::write(&file, "[tracking]\nrender_threads = 2\n").unwrap();
        let told = load(
            CommandLine {
                db: Some("postgres://app@localhost/crm".into()),
                config: Some(file),
                ..Default::default()
            },
            &[],
        )
        .unwrap();
        assert_eq!(told.render_threads(), 2);
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("herald.toml");
        std::fs::write(&file, "[delivery]\ntimeout = 3\n").unwrap();
        let cli = CommandLine {
            config: Some(file),
            ..Default::default()
        };
        let err = load(cli, &[]).unwrap_err();
        assert!(err.to_string().contains("unknown field `timeout`"), "{err}");
    }

    #[test]
    fn api_tokens_need_names_of_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("herald.toml");
        let token = |name: &str, token: &str| {
            format!(
                "[[api_tokens]]\nname = \"{name}\"\ntoken = \"{token}\"\nrole = \"subscribe\"\n"
            )
        };
        let cli = CommandLine {
            config: Some(file.clone()),
            ..Default::default()
        };
        for (first, second) in [("zapier", "zapier"), ("zapier", "default"), ("zapier", " ")] {
            let text = format!(
                "{}{}",
                token(first, "token-one-0123456789"),
                token(second, "token-two-0123456789")
            );
            std::fs::write(&file, text).unwrap();
            let err = load(cli.clone(), &[]).unwrap_err();
            assert!(
                err.to_string().contains("needs a name of its own"),
                "{second}: {err}"
            );
        }
        let text = format!(
            "{}{}",
            token("zapier", "token-one-0123456789"),
            token("make", "token-two-0123456789")
        );
        std::fs::write(&file, text).unwrap();
        assert_eq!(load(cli, &[]).unwrap().api_tokens.len(), 2);
    }
}
