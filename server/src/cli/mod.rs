//! The command line and the typed configuration it produces. Every setting is a flag with an
//! environment variable and a default that works on a developer machine; a bad value stops the
//! program at start with a message that names the setting and what it expects.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

pub mod release;
pub mod remote;
pub mod traffic;

use crate::db::DatabaseUrl;
use crate::influx::{InfluxApi, InfluxConfig};

#[derive(Debug, Parser)]
#[command(name = "opsdeck", version, about = "Operations dashboard and release control plane")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Log format: `json` for machines, `pretty` for people, `auto` picks json unless stdout is a terminal.
    #[arg(long, env = "OPSDECK_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto, global = true)]
    pub log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the dashboard, the JSON API and the background workers.
    Serve(Box<ServeSettings>),
    /// Apply the database migrations and exit.
    Migrate(DatabaseSettings),
    /// Manage users: `opsdeck user add --role admin alice` creates the first admin.
    User(crate::auth::cli::UserArgs),
    /// Manage API tokens for services, agents, scripts and wall screens.
    Token(crate::auth::cli::TokenArgs),
    /// Serve the dashboard plus a demo fleet of real services on loopback, and a control API to break them.
    Demo(Box<crate::demo::DemoSettings>),
    /// Run one demo service (the demo starts these itself); its ingest token comes from OPSDECK_TOKEN.
    DemoService(crate::demo::service::ServiceArgs),
    /// Report this node's CPU, memory, disk and network to opsdeck (token in OPSDECK_TOKEN).
    Agent(crate::agent::AgentArgs),
    /// Run the data plane: a reverse proxy that follows the traffic policies in PostgreSQL.
    Router(Box<crate::router::RouterSettings>),
    /// Releases through the API: `list`, `show ID`, `start SERVICE --to v2`, `act ID promote`
    /// (token in OPSDECK_TOKEN; exit 7 = someone changed it first, 5 = not allowed).
    Release(release::ReleaseArgs),
    /// A service's traffic split through the API: `show SERVICE`, `set SERVICE v1=90 v2=10`.
    Traffic(traffic::TrafficArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Auto,
    Json,
    Pretty,
}

/// Everything `opsdeck serve` needs.
#[derive(Debug, Clone, Args)]
pub struct ServeSettings {
    #[command(flatten)]
    pub http: HttpSettings,
    #[command(flatten)]
    pub database: DatabaseSettings,
    #[command(flatten)]
    pub influx: InfluxSettings,
    #[command(flatten)]
    pub auth: AuthSettings,
    #[command(flatten)]
    pub metrics: MetricsSettings,
    #[command(flatten)]
    pub logs: LogSettings,
    #[command(flatten)]
    pub releases: ReleaseSettings,
}

#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Releases")]
pub struct ReleaseSettings {
    /// Who starts and stops instances for rolling releases: an HTTP deployer
    /// (`PUT/DELETE/GET {url}/deployments/{service}/{version}/{node}`; `opsdeck demo` serves one
    /// on its control API). Without it rolling releases are refused.
    #[arg(long = "deployer-url", env = "OPSDECK_DEPLOYER_URL")]
    pub deployer_url: Option<url::Url>,
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Metrics ingest")]
pub struct MetricsSettings {
    /// Most points held in memory for InfluxDB; a request that doesn't fit is refused (503, Retry-After).
    #[arg(long = "metrics-buffer-points", env = "OPSDECK_METRICS_BUFFER_POINTS", default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..=100_000_000))]
    pub buffer_points: u32,

    /// Batches written to InfluxDB at the same time (each up to --influx-batch-size points).
    /// Eight keep InfluxDB busy while this process parses incoming requests between a batch's
    /// answer and the next send (4 gave 0.90× the direct rate in `scripts/bench metrics`, 8 gave 0.99×).
    #[arg(long = "metrics-writers", env = "OPSDECK_METRICS_WRITERS", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub writers: u32,
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Logs")]
pub struct LogSettings {
    /// Log lines older than this are dropped, a whole day's partition at a time (e.g. `7d`, at least `1d`).
    #[arg(long = "log-retention", env = "OPSDECK_LOG_RETENTION", default_value = "7d", value_parser = parse_retention)]
    pub retention: Duration,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self { retention: Duration::from_secs(7 * 86_400) }
    }
}

/// Partitions are days, so a retention shorter than one can't be honoured.
fn parse_retention(value: &str) -> Result<Duration, String> {
    let retention = humantime::parse_duration(value).map_err(|e| format!("a duration such as 7d ({e})"))?;
    if retention < Duration::from_secs(86_400) {
        return Err("at least 1d: log partitions are whole days".to_owned());
    }
    Ok(retention)
}

/// Whether the session cookie carries the `Secure` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CookieSecure {
    /// Secure when the request came over TLS (`X-Forwarded-Proto: https` from the proxy in front).
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Access")]
pub struct AuthSettings {
    /// Let anyone read without signing in (acting still needs a login or a token). Off by default.
    #[arg(long = "anonymous-read", env = "OPSDECK_ANONYMOUS_READ", action = clap::ArgAction::SetTrue)]
    pub anonymous_read: bool,

    /// A browser session unused for this long ends (e.g. `12h`).
    #[arg(long = "session-idle", env = "OPSDECK_SESSION_IDLE", default_value = "12h", value_parser = humantime::parse_duration)]
    pub session_idle: Duration,

    /// A browser session ends this long after sign-in, used or not (e.g. `7d`).
    #[arg(long = "session-lifetime", env = "OPSDECK_SESSION_LIFETIME", default_value = "7d", value_parser = humantime::parse_duration)]
    pub session_lifetime: Duration,

    /// The `Secure` cookie attribute: auto (when served over TLS), always or never.
    #[arg(long = "cookie-secure", env = "OPSDECK_COOKIE_SECURE", value_enum, default_value_t = CookieSecure::Auto)]
    pub cookie_secure: CookieSecure,

    /// Failed sign-ins allowed per account within the window before sign-in is refused.
    #[arg(long = "login-failures-per-account", env = "OPSDECK_LOGIN_FAILURES_PER_ACCOUNT", default_value_t = 5, value_parser = clap::value_parser!(i64).range(1..))]
    pub login_failures_per_account: i64,

    /// Failed sign-ins allowed per client address within the window.
    #[arg(long = "login-failures-per-address", env = "OPSDECK_LOGIN_FAILURES_PER_ADDRESS", default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..))]
    pub login_failures_per_address: i64,

    /// The window over which failed sign-ins are counted.
    #[arg(long = "login-failure-window", env = "OPSDECK_LOGIN_FAILURE_WINDOW", default_value = "15m", value_parser = humantime::parse_duration)]
    pub login_failure_window: Duration,
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "HTTP")]
pub struct HttpSettings {
    /// Address to listen on (host:port); port 0 picks a free port.
    #[arg(long = "listen", env = "OPSDECK_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,

    /// Folder with the built browser bundle (`pkg/opsdeck.js`, `.wasm`, `.css`), made by `cargo xtask site`.
    #[arg(long = "site-root", env = "OPSDECK_SITE_ROOT", default_value = "target/site")]
    pub site_root: PathBuf,

    /// A request that takes longer than this is answered 408 (e.g. `30s`, `2m`).
    #[arg(long = "request-timeout", env = "OPSDECK_REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// Largest request body accepted, in bytes; larger ones get 413.
    #[arg(long = "body-limit", env = "OPSDECK_BODY_LIMIT", default_value_t = 2 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(1024..))]
    pub body_limit: u64,

    /// How long shutdown waits for in-flight requests before giving up.
    #[arg(long = "shutdown-grace", env = "OPSDECK_SHUTDOWN_GRACE", default_value = "20s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "PostgreSQL")]
pub struct DatabaseSettings {
    /// PostgreSQL connection URL (postgres://user:password@host:port/database).
    #[arg(
        id = "database_url",
        long = "database-url",
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/opsdeck"
    )]
    pub url: DatabaseUrl,

    /// Most connections opsdeck opens to PostgreSQL at once.
    #[arg(long = "database-max-connections", env = "OPSDECK_DATABASE_MAX_CONNECTIONS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_connections: u32,

    /// How long to wait for a free connection (and for PostgreSQL at start) before failing.
    #[arg(long = "database-timeout", env = "OPSDECK_DATABASE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub acquire_timeout: Duration,
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "InfluxDB")]
pub struct InfluxSettings {
    /// InfluxDB base URL (http or https).
    #[arg(id = "influx_url", long = "influx-url", env = "OPSDECK_INFLUX_URL", default_value = "http://127.0.0.1:8086", value_parser = parse_http_url)]
    pub url: url::Url,

    /// Which write API to use: v1 (`/write`, InfluxDB 1.x) or v2 (`/api/v2/write`, InfluxDB 2.x and 3.x).
    #[arg(long = "influx-api", env = "OPSDECK_INFLUX_API", value_enum, default_value_t = InfluxApi::V1)]
    pub api: InfluxApi,

    /// Database (v1) or bucket (v2) that metrics go to.
    #[arg(
        id = "influx_database",
        long = "influx-database",
        env = "OPSDECK_INFLUX_DATABASE",
        default_value = "opsdeck"
    )]
    pub database: String,

    /// Organisation (v2 only; InfluxDB 3 ignores it).
    #[arg(long = "influx-org", env = "OPSDECK_INFLUX_ORG")]
    pub org: Option<String>,

    /// API token (v2: sent as `Authorization: Token …`; required there).
    #[arg(long = "influx-token", env = "OPSDECK_INFLUX_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// User name for v1 authentication, if it is switched on.
    #[arg(long = "influx-username", env = "OPSDECK_INFLUX_USERNAME")]
    pub username: Option<String>,

    /// Password for v1 authentication.
    #[arg(long = "influx-password", env = "OPSDECK_INFLUX_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,

    /// Timeout for each InfluxDB request.
    #[arg(id = "influx_timeout", long = "influx-timeout", env = "OPSDECK_INFLUX_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// Most points sent in one write request.
    #[arg(long = "influx-batch-size", env = "OPSDECK_INFLUX_BATCH_SIZE", default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub batch_size: u32,
}

impl InfluxSettings {
    /// Checks the settings that depend on each other and builds the client configuration.
    pub fn to_config(&self) -> Result<InfluxConfig, SettingsError> {
        if self.database.trim().is_empty() {
            return Err(SettingsError::new(
                "--influx-database (OPSDECK_INFLUX_DATABASE)",
                "a database or bucket name, not an empty string",
            ));
        }
        let auth = match self.api {
            InfluxApi::V2 => {
                let token = self.token.clone().filter(|t| !t.is_empty()).ok_or_else(|| {
                    SettingsError::new(
                        "--influx-token (OPSDECK_INFLUX_TOKEN)",
                        "an API token: the v2 API (--influx-api=v2) always needs one",
                    )
                })?;
                crate::influx::InfluxAuth::Token(token)
            }
            InfluxApi::V1 => match (&self.username, &self.password) {
                (Some(user), Some(password)) => {
                    crate::influx::InfluxAuth::Basic { username: user.clone(), password: password.clone() }
                }
                (None, None) => crate::influx::InfluxAuth::None,
                _ => {
                    return Err(SettingsError::new(
                        "--influx-username/--influx-password (OPSDECK_INFLUX_USERNAME/OPSDECK_INFLUX_PASSWORD)",
                        "both or neither",
                    ));
                }
            },
        };
        Ok(InfluxConfig {
            url: self.url.clone(),
            api: self.api,
            database: self.database.clone(),
            org: self.org.clone(),
            auth,
            timeout: self.timeout,
            batch_size: self.batch_size as usize,
        })
    }
}

/// A setting whose value doesn't fit: names the setting and what it expects.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {setting}: expected {expected}")]
pub struct SettingsError {
    pub setting: &'static str,
    pub expected: &'static str,
}

impl SettingsError {
    fn new(setting: &'static str, expected: &'static str) -> Self {
        Self { setting, expected }
    }
}

fn parse_http_url(value: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(value).map_err(|e| format!("a URL such as http://127.0.0.1:8086 ({e})"))?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        other => Err(format!("an http:// or https:// URL, not {other}://")),
    }
}

#[cfg(test)]
mod tests;
