//! PostgreSQL: the connection pool, the embedded migrations, and the `migrate` subcommand.

use std::{fmt, str::FromStr};

use anyhow::Context;
use sqlx::{
    PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use crate::cli::DatabaseSettings;

/// The migrations in `migrations/`, compiled into the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// A PostgreSQL URL, checked at parse time. Printing it hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(url::Url);

impl DatabaseUrl {
    pub fn connect_options(&self) -> PgConnectOptions {
        PgConnectOptions::from_str(self.0.as_str()).expect("checked when the URL was parsed")
    }

    /// The same server with another database name (tests create one database per test).
    pub fn with_database(&self, name: &str) -> Self {
        let mut url = self.0.clone();
        url.set_path(name);
        Self(url)
    }

    /// The URL with its password, for handing to a child process (in its environment, never
    /// on its command line or in a log).
    pub fn expose_secret(&self) -> &str {
        self.0.as_str()
    }

    /// The name of the database the URL points at.
    pub fn database_name(&self) -> &str {
        self.0.path().trim_start_matches('/')
    }
}

impl FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let url =
            url::Url::parse(value).map_err(|e| format!("a URL such as postgres://user@host:5432/opsdeck ({e})"))?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(format!("a postgres:// URL, not {}://", url.scheme()));
        }
        PgConnectOptions::from_str(value).map_err(|e| format!("a valid PostgreSQL URL ({e})"))?;
        Ok(Self(url))
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.0.clone();
        if shown.password().is_some() {
            let _ = shown.set_password(Some("***"));
        }
        write!(f, "{shown}")
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// Opens the pool and checks PostgreSQL answers, failing with what to do if it doesn't.
#[tracing::instrument(skip_all, fields(database = %settings.url))]
pub async fn connect(settings: &DatabaseSettings) -> anyhow::Result<PgPool> {
    let pool = PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        .connect_with(settings.url.connect_options())
        .await
        .with_context(|| {
            format!(
                "cannot connect to PostgreSQL at {} — is it running, and does the database exist? \
                 Set DATABASE_URL or --database-url to point at it",
                settings.url
            )
        })?;
    Ok(pool)
}

/// Applies every migration not yet applied.
#[tracing::instrument(skip_all)]
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR.run(pool).await.context("applying database migrations failed")?;
    tracing::info!(migrations = MIGRATOR.iter().count(), "database schema is up to date");
    Ok(())
}

/// `opsdeck migrate`.
pub async fn migrate_command(settings: &DatabaseSettings) -> anyhow::Result<()> {
    let pool = connect(settings).await?;
    migrate(&pool).await
}

/// A quick liveness query, for readiness checks.
pub async fn ping(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(pool).await.map(|_| ())
}
