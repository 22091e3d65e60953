//! The real application, started in-process on port 0 against its own fresh databases.

use std::{path::PathBuf, time::Duration};

use opsdeck::{
    cli::{DatabaseSettings, HttpSettings, InfluxSettings, ServeSettings},
    db::DatabaseUrl,
    influx::{InfluxApi, InfluxClient},
    startup::Application,
};
use sqlx::{Connection, PgConnection};

/// Where the test servers are, from the environment `scripts/test` sets.
#[derive(Debug, Clone)]
pub struct TestEnv {
    pub admin_database_url: DatabaseUrl,
    pub influx_url: url::Url,
    pub site_root: PathBuf,
}

fn required(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with scripts/test, which starts PostgreSQL and InfluxDB and sets it")
    })
}

impl TestEnv {
    pub fn from_env() -> Self {
        let site_root = PathBuf::from(required("OPSDECK_SITE_ROOT"));
        Self {
            admin_database_url: required("OPSDECK_TEST_DATABASE_URL")
                .parse()
                .expect("OPSDECK_TEST_DATABASE_URL is a postgres URL"),
            influx_url: required("OPSDECK_TEST_INFLUX_URL").parse().expect("OPSDECK_TEST_INFLUX_URL is a URL"),
            site_root,
        }
    }

    /// Creates an empty database with a unique name and returns its URL.
    pub async fn fresh_database(&self) -> DatabaseUrl {
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect_with(&self.admin_database_url.connect_options())
            .await
            .expect("the test PostgreSQL answers (scripts/test starts it)");
        // The name is ours (a UUID), never user input.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await
            .expect("create a test database");
        self.admin_database_url.with_database(&name)
    }

    /// Settings for a serve run on a free port, with a fresh PostgreSQL database and a unique
    /// InfluxDB database name (opsdeck creates it at start).
    pub async fn serve_settings(&self) -> ServeSettings {
        ServeSettings {
            http: HttpSettings {
                listen: "127.0.0.1:0".parse().expect("a valid address"),
                site_root: self.site_root.clone(),
                request_timeout: Duration::from_secs(30),
                body_limit: 2 * 1024 * 1024,
                shutdown_grace: Duration::from_secs(10),
            },
            database: DatabaseSettings {
                url: self.fresh_database().await,
                max_connections: 5,
                acquire_timeout: Duration::from_secs(5),
            },
            influx: InfluxSettings {
                url: self.influx_url.clone(),
                api: InfluxApi::V1,
                database: format!("test_{}", uuid::Uuid::new_v4().simple()),
                org: None,
                token: None,
                username: None,
                password: None,
                timeout: Duration::from_secs(5),
                batch_size: 5000,
            },
        }
    }
}

/// A running application and handles to what it talks to.
pub struct TestApp {
    pub address: String,
    pub http: reqwest::Client,
    pub db: sqlx::PgPool,
    pub influx: InfluxClient,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestApp {
    /// Starts the app with default test settings.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Starts the app after `adjust` has changed the settings.
    pub async fn spawn_with(adjust: impl FnOnce(&mut ServeSettings)) -> Self {
        let env = TestEnv::from_env();
        let mut settings = env.serve_settings().await;
        adjust(&mut settings);
        Self::start(settings).await
    }

    /// Starts the app with exactly these settings.
    pub async fn start(settings: ServeSettings) -> Self {
        let application = Application::build(settings).await.expect("the application builds");
        let address = format!("http://{}", application.local_addr());
        let db = application.state().db.clone();
        let influx = application.state().influx.clone();
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(application.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        Self { address, http: reqwest::Client::new(), db, influx, shutdown: Some(shutdown), server }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.expect("the app answers")
    }

    /// Begins a graceful shutdown and waits for the server to finish.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.begin_shutdown();
        self.finished().await
    }

    /// Begins a graceful shutdown without waiting; `finished` waits.
    pub fn begin_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    pub async fn finished(mut self) -> anyhow::Result<()> {
        (&mut self.server).await?
    }
}
