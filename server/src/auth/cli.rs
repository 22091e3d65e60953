//! `opsdeck user …` and `opsdeck token …`: the first admin is created here, before anyone can
//! sign in. Passwords come from a prompt or standard input, never from a flag (flags land in
//! shell history and process lists).

use std::io::{BufRead, IsTerminal};

use anyhow::{Context, bail};
use app::model::identity::{NewToken, NewUser, Role, Scope, UserUpdate, Username};
use clap::{Args, Subcommand};

use super::RequestContext;
use crate::{audit::Actor, cli::DatabaseSettings};

#[derive(Debug, Args)]
pub struct UserArgs {
    #[command(subcommand)]
    pub command: UserCommand,
    #[command(flatten)]
    pub database: DatabaseSettings,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user. The password is asked for (or read from the first line of standard input).
    Add {
        /// Sign-in name: lower-case letters, digits, '.', '_', '-'.
        username: Username,
        /// viewer (reads), operator (also acts on releases), admin (also users and tokens).
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// The name shown in the UI (defaults to the user name).
        #[arg(long)]
        display_name: Option<String>,
    },
    /// Set a new password (asked for, or read from standard input); ends the user's sessions.
    Password { username: Username },
    /// List users.
    List,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,
    #[command(flatten)]
    pub database: DatabaseSettings,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token and print it (once).
    Create {
        /// What will hold the token, e.g. wall-screen-3.
        #[arg(long)]
        name: String,
        /// ingest, read, operate or admin; repeat or separate with commas.
        #[arg(long = "scope", required = true, value_delimiter = ',', value_parser = parse_scope)]
        scopes: Vec<Scope>,
        /// Days until it expires (default: never).
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// Revoke a token by id.
    Revoke { id: i64 },
    /// List tokens (never their secrets).
    List,
}

fn parse_role(value: &str) -> Result<Role, String> {
    value.parse().map_err(|e: app::model::identity::NotOneOf| e.to_string())
}

fn parse_scope(value: &str) -> Result<Scope, String> {
    value.parse().map_err(|e: app::model::identity::NotOneOf| e.to_string())
}

fn actor() -> Actor {
    let who = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    Actor::system(&format!("command line ({who})"))
}

/// Asks twice on a terminal; otherwise reads one line from standard input.
fn read_password() -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ").context("cannot read the password")?;
        let second = rpassword::prompt_password("Same password again: ").context("cannot read the password")?;
        if first != second {
            bail!("the two passwords differ; nothing was changed");
        }
        Ok(first)
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("cannot read the password from standard input")?;
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }
}

pub async fn user(args: UserArgs) -> anyhow::Result<()> {
    let db = crate::db::connect(&args.database).await?;
    crate::db::migrate(&db).await?;
    let context = RequestContext::command_line();
    match args.command {
        UserCommand::Add { username, role, display_name } => {
            let password = read_password()?;
            let display_name = display_name.unwrap_or_else(|| username.to_string());
            let request = NewUser { username, display_name, role, password };
            let created =
                super::users::create(&db, request, &actor(), &context).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("created user {} ({})", created.username, created.role);
        }
        UserCommand::Password { username } => {
            let password = read_password()?;
            let change = UserUpdate { password: Some(password), ..Default::default() };
            super::users::update(&db, &username, change, &actor(), &context)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("password of {username} changed; their sessions have ended");
        }
        UserCommand::List => {
            for user in super::users::list(&db).await? {
                let state = if user.disabled { "disabled" } else { "active" };
                println!("{:<24} {:<9} {:<8} {}", user.username, user.role, state, user.display_name);
            }
        }
    }
    Ok(())
}

pub async fn token(args: TokenArgs) -> anyhow::Result<()> {
    let db = crate::db::connect(&args.database).await?;
    crate::db::migrate(&db).await?;
    let context = RequestContext::command_line();
    match args.command {
        TokenCommand::Create { name, scopes, expires_in_days } => {
            let request = NewToken { name, scopes, expires_in_days };
            let created =
                super::tokens::create(&db, &request, &actor(), &context).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!("created token {} (id {}); it is shown only this once:", created.token.name, created.token.id);
            println!("{}", created.secret);
        }
        TokenCommand::Revoke { id } => {
            let revoked =
                super::tokens::revoke(&db, id, &actor(), &context).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("revoked token {} (id {})", revoked.name, revoked.id);
        }
        TokenCommand::List => {
            for t in super::tokens::list(&db).await? {
                let scopes: Vec<_> = t.scopes.iter().map(|s| s.as_str()).collect();
                let state = if t.revoked_at.is_some() { "revoked" } else { "active" };
                println!("{:>5} {:<24} {:<12} {:<22} {}", t.id, t.name, t.prefix, scopes.join(","), state);
            }
        }
    }
    Ok(())
}
