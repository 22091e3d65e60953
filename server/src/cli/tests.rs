//! Parsing the command line: flags win, bad values name the setting.

use clap::Parser;

use super::{Cli, Command, ServeSettings};
use crate::influx::{InfluxApi, InfluxAuth};

fn serve(args: &[&str]) -> Result<ServeSettings, String> {
    let argv = ["opsdeck", "serve"].iter().chain(args.iter());
    match Cli::try_parse_from(argv).map_err(|e| e.to_string())?.command {
        Command::Serve(settings) => Ok(*settings),
        _ => unreachable!("asked for serve"),
    }
}

#[test]
fn the_command_line_definition_is_consistent() {
    use clap::CommandFactory;
    Cli::command().debug_assert();
}

#[test]
fn flags_become_typed_settings() {
    let settings = serve(&[
        "--listen",
        "127.0.0.1:0",
        "--request-timeout",
        "2m",
        "--database-url",
        "postgres://app:secret@db.internal:6543/ops",
        "--influx-url",
        "https://influx.example:8086",
        "--influx-api",
        "v2",
        "--influx-token",
        "t0ken",
        "--influx-database",
        "metrics",
    ])
    .expect("valid flags parse");
    assert_eq!(settings.http.listen.port(), 0);
    assert_eq!(settings.http.request_timeout, std::time::Duration::from_secs(120));
    assert_eq!(settings.influx.api, InfluxApi::V2);
    let config = settings.influx.to_config().expect("v2 with a token is complete");
    assert_eq!(config.auth, InfluxAuth::Token("t0ken".into()));
    assert_eq!(config.database, "metrics");
}

#[test]
fn database_password_never_appears_in_debug_output() {
    let settings = serve(&["--database-url", "postgres://app:hunter2@db:5432/ops"]).expect("valid url");
    let printed = format!("{settings:?} {}", settings.database.url);
    assert!(!printed.contains("hunter2"), "password leaked: {printed}");
    assert!(printed.contains("db:5432/ops"), "the rest of the URL stays readable: {printed}");
}

#[test]
fn a_bad_listen_address_names_the_setting() {
    let error = serve(&["--listen", "localhost"]).expect_err("not host:port");
    assert!(error.contains("--listen"), "{error}");
}

#[test]
fn a_non_http_influx_url_is_refused_with_what_is_expected() {
    let error = serve(&["--influx-url", "ftp://influx:8086"]).expect_err("wrong scheme");
    assert!(error.contains("--influx-url") && error.contains("http://"), "{error}");
}

#[test]
fn a_database_url_that_is_not_postgres_is_refused() {
    let error = serve(&["--database-url", "mysql://root@localhost/ops"]).expect_err("not postgres");
    assert!(error.contains("--database-url"), "{error}");
}

#[test]
fn v2_without_a_token_fails_naming_the_token_setting() {
    let settings = serve(&["--influx-api", "v2"]).expect("parses; the rule spans two settings");
    let error = settings.influx.to_config().expect_err("v2 needs a token").to_string();
    assert!(error.contains("OPSDECK_INFLUX_TOKEN"), "{error}");
}

#[test]
fn a_v1_user_without_a_password_is_refused() {
    let settings = serve(&["--influx-username", "ops"]).expect("parses");
    let error = settings.influx.to_config().expect_err("half a credential").to_string();
    assert!(error.contains("--influx-password"), "{error}");
}

#[test]
fn a_zero_body_limit_is_refused() {
    let error = serve(&["--body-limit", "0"]).expect_err("too small");
    assert!(error.contains("--body-limit"), "{error}");
}

#[test]
fn anonymous_read_is_switched_on_by_its_flag() {
    assert!(serve(&["--anonymous-read"]).expect("flag").auth.anonymous_read);
}

#[test]
fn the_router_takes_the_flags_of_the_shared_contract() {
    let argv = [
        "opsdeck",
        "router",
        "--listen",
        "127.0.0.1:8080",
        "--admin-listen",
        "127.0.0.1:8081",
        "--database-url",
        "postgres://postgres@127.0.0.1:5432/opsdeck",
        "--influx-url",
        "http://127.0.0.1:8086",
        "--opsdeck-url",
        "http://127.0.0.1:3000",
        "--ingest-token",
        "odk_secret",
        "--provider",
        "haproxy",
        "--haproxy-socket",
        "/run/haproxy/admin.sock",
        "--haproxy-backend-prefix",
        "svc_",
    ];
    let Command::Router(settings) = Cli::try_parse_from(argv).expect("parses").command else {
        unreachable!("asked for router")
    };
    assert_eq!(settings.admin_listen.port(), 8081);
    assert_eq!(settings.provider, crate::router::ProviderKind::Haproxy);
    assert_eq!(
        settings.haproxy.socket,
        Some(crate::traffic::haproxy::runtime::RuntimeSocket::Unix("/run/haproxy/admin.sock".into()))
    );
    assert_eq!(settings.haproxy.backend_prefix, "svc_");
    assert_eq!(settings.ingest_token.as_deref(), Some("odk_secret"));
}
