//! The `opsdeck` command: parse the command line, start telemetry, run the chosen subcommand.

use clap::Parser;
use opsdeck::cli::{Cli, Command};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    opsdeck::telemetry::init(cli.log_format);
    let outcome = match cli.command {
        Command::Serve(settings) => opsdeck::startup::serve(*settings).await,
        Command::Migrate(database) => opsdeck::db::migrate_command(&database).await,
        Command::User(args) => opsdeck::auth::cli::user(args).await,
        Command::Token(args) => opsdeck::auth::cli::token(args).await,
        Command::Demo(settings) => opsdeck::demo::run(*settings, cli.log_format).await,
        Command::DemoService(args) => opsdeck::demo::service::run(args).await,
        Command::Agent(args) => opsdeck::agent::run(args).await,
        Command::Router(settings) => opsdeck::router::run(*settings).await,
        // These report their own failures, each with its own exit code.
        Command::Release(args) => return opsdeck::cli::release::run(args).await,
        Command::Traffic(args) => return opsdeck::cli::traffic::run(args).await,
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // Fail fast with the whole cause chain on stderr: the first line says what failed,
            // the rest says why.
            tracing::error!(error = format!("{error:#}"), "opsdeck stopped");
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
