//! The real application, started in-process on port 0 against its own fresh databases.

use std::{path::PathBuf, time::Duration};

use app::model::identity::{NewToken, NewUser, Role, Scope};
use opsdeck::{
    audit::Actor,
    auth::RequestContext,
    cli::{AuthSettings, CookieSecure, DatabaseSettings, HttpSettings, InfluxSettings, MetricsSettings, ServeSettings},
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
            metrics: MetricsSettings { buffer_points: 100_000, writers: 8 },
            auth: AuthSettings {
                anonymous_read: false,
                session_idle: Duration::from_secs(12 * 3600),
                session_lifetime: Duration::from_secs(7 * 86400),
                cookie_secure: CookieSecure::Never,
                login_failures_per_account: 5,
                login_failures_per_address: 20,
                login_failure_window: Duration::from_secs(15 * 60),
            },
            logs: Default::default(),
            releases: Default::default(),
        }
    }
}

/// A running application and handles to what it talks to.
pub struct TestApp {
    pub address: String,
    pub http: reqwest::Client,
    /// The app's own pool and client: their connections live on the app's runtime, so use them
    /// while it runs; after it has stopped, open new ones (`InfluxClient::new(influx.config().clone())`).
    pub db: sqlx::PgPool,
    pub influx: InfluxClient,
    pub state: opsdeck::state::AppState,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    /// Completes with the server's result when it has stopped.
    server: tokio::sync::oneshot::Receiver<anyhow::Result<()>>,
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
        // `OPSDECK_TEST_LOG=1 cargo test …` shows the app's own log while debugging a test.
        if std::env::var_os("OPSDECK_TEST_LOG").is_some() {
            opsdeck::telemetry::init(opsdeck::cli::LogFormat::Pretty);
        }
        // The app runs on its own multi-threaded runtime, as in production: the test's
        // single-threaded runtime (and anything blocking it) can't stall the server.
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, server) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime for the app");
            runtime.block_on(async move {
                let application = Application::build(settings).await.expect("the application builds");
                let address = format!("http://{}", application.local_addr());
                let _ = started_tx.send((address, application.state().clone()));
                let outcome = application
                    .run_until_stopped(async move {
                        let _ = stopped.await;
                    })
                    .await;
                let _ = done_tx.send(outcome);
            });
        });
        let (address, state) = started.await.expect("the app starts (see the panic above if not)");
        let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("client");
        Self {
            address,
            http: client,
            db: state.db.clone(),
            influx: state.influx.clone(),
            state,
            shutdown: Some(shutdown),
            server,
        }
    }

    /// Creates a user directly in the database; returns the password.
    pub async fn add_user(&self, username: &str, role: Role) -> String {
        let password = format!("pw-{username}-{}", uuid::Uuid::new_v4().simple());
        let request = NewUser {
            username: username.parse().expect("valid user name"),
            display_name: format!("{username} (test)"),
            role,
            password: password.clone(),
        };
        opsdeck::auth::users::create(&self.db, request, &Actor::system("test set-up"), &RequestContext::default())
            .await
            .expect("create user");
        password
    }

    /// Creates an API token with these scopes; returns its secret.
    pub async fn token(&self, name: &str, scopes: &[Scope]) -> String {
        let request = NewToken { name: name.into(), scopes: scopes.to_vec(), expires_in_days: None };
        opsdeck::auth::tokens::create(&self.db, &request, &Actor::system("test set-up"), &RequestContext::default())
            .await
            .expect("create token")
            .secret
    }

    /// A client that keeps cookies and does not follow redirects (tests look at them).
    pub fn browser_like_client() -> reqwest::Client {
        reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client")
    }

    /// Signs in through the real form (fetching its anti-forgery token first) and returns the
    /// client holding the session cookie, plus the session's CSRF token from the page.
    pub async fn sign_in(&self, username: &str, password: &str) -> (reqwest::Client, String) {
        let client = Self::browser_like_client();
        let page = client.get(self.url("/login")).send().await.expect("login page").text().await.expect("html");
        let login_csrf = hidden_field(&page, "login_csrf").expect("the sign-in form has its token");
        let response = client
            .post(self.url("/auth/login"))
            .form(&[("username", username), ("password", password), ("next", "/"), ("login_csrf", &login_csrf)])
            .send()
            .await
            .expect("sign in");
        assert_eq!(response.status(), 303);
        assert_eq!(response.headers()["location"], "/", "signed in, sent to the page asked for");
        let home = client.get(self.url("/")).send().await.expect("home").text().await.expect("html");
        let csrf = hidden_field(&home, "csrf").expect("the signed-in page carries the session's CSRF token");
        (client, csrf)
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

    pub async fn finished(self) -> anyhow::Result<()> {
        self.server.await?
    }
}

/// The value of `<input … name="NAME" value="…">` in server-rendered HTML.
pub fn hidden_field(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\"");
    let at = html.find(&marker)?;
    let tag_start = html[..at].rfind('<')?;
    let tag_end = at + html[at..].find('>')?;
    let tag = &html[tag_start..tag_end];
    let value_at = tag.find("value=\"")? + 7;
    let value_end = value_at + tag[value_at..].find('"')?;
    Some(tag[value_at..value_end].to_owned())
}
