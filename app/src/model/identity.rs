//! Who someone is and what they may do: roles for people, scopes for API tokens.

use std::{fmt, str::FromStr};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A person's role. Each role includes what the ones before it may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Also acts on releases and traffic.
    Operator,
    /// Also manages users, tokens and settings.
    Admin,
}

/// What an API token may do. `operate` includes `read`; `admin` includes everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Register instances, send heartbeats, logs and metrics.
    Ingest,
    /// Read everything.
    Read,
    /// Act on releases and traffic.
    Operate,
    /// Manage users, tokens and settings.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// Whether a person with this role may do what `scope` stands for.
    pub fn grants(self, scope: Scope) -> bool {
        match scope {
            Scope::Read => true,
            Scope::Operate => self >= Role::Operator,
            Scope::Admin | Scope::Ingest => self == Role::Admin,
        }
    }
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Ingest, Scope::Read, Scope::Operate, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Operate => "operate",
            Scope::Admin => "admin",
        }
    }

    /// Whether a token holding this scope may do what `needed` stands for.
    pub fn covers(self, needed: Scope) -> bool {
        self == needed || self == Scope::Admin || (self == Scope::Operate && needed == Scope::Read)
    }
}

/// An input that is not one of the allowed words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotOneOf {
    pub given: String,
    pub allowed: &'static [&'static str],
}

impl fmt::Display for NotOneOf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not one of {}", self.given, self.allowed.join(", "))
    }
}

impl std::error::Error for NotOneOf {}

impl FromStr for Role {
    type Err = NotOneOf;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| NotOneOf { given: s.to_owned(), allowed: &["viewer", "operator", "admin"] })
    }
}

impl FromStr for Scope {
    type Err = NotOneOf;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| NotOneOf { given: s.to_owned(), allowed: &["ingest", "read", "operate", "admin"] })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user name: 1–63 characters, lower-case letters, digits, `.`, `_`, `-`, starting with a
/// letter or digit. The database checks the same rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "ssr", schema(value_type = String, pattern = "^[a-z0-9][a-z0-9._-]{0,62}$"))]
#[serde(try_from = "String", into = "String")]
pub struct Username(String);

impl Username {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Username {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        let valid_start = value.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let valid_rest =
            value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
        if value.len() > 63 || !valid_start || !valid_rest {
            return Err(format!(
                "{value:?} is not a valid user name: use 1-63 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit"
            ));
        }
        Ok(Self(value))
    }
}

impl FromStr for Username {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::try_from(s.to_owned())
    }
}

impl From<Username> for String {
    fn from(value: Username) -> Self {
        value.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The shortest password accepted. Length beats composition rules (NIST SP 800-63B).
pub const MIN_PASSWORD_LENGTH: usize = 12;

/// Checks a new password; the message says what to change.
pub fn check_new_password(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_LENGTH {
        return Err(format!("the password needs at least {MIN_PASSWORD_LENGTH} characters"));
    }
    if password.len() > 1024 {
        return Err("the password is longer than 1024 bytes".into());
    }
    Ok(())
}

/// The signed-in person, as the UI shows them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurrentUser {
    pub username: String,
    pub display_name: String,
    pub role: Role,
    /// The session's anti-forgery token, put into every form that changes something.
    pub csrf_token: String,
}

/// Who made a request, as the API reports it (`GET /api/v1/me`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Whoami {
    /// `user`, `token` or `anonymous`.
    pub kind: String,
    pub name: String,
    pub role: Option<Role>,
    pub scopes: Vec<Scope>,
}

/// A user as listed to admins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct UserSummary {
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub disabled: bool,
}

/// An API token as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct TokenSummary {
    pub id: i64,
    pub name: String,
    /// The token's first characters, to tell tokens apart.
    pub prefix: String,
    pub scopes: Vec<Scope>,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A token just created: the only time its secret is shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct CreatedToken {
    pub token: TokenSummary,
    /// Send as `Authorization: Bearer <secret>`. Shown once; store it now.
    pub secret: String,
}

/// A request to create a user (admins only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct NewUser {
    pub username: Username,
    #[cfg_attr(feature = "ssr", schema(min_length = 1, max_length = 200, pattern = "\\S"))]
    pub display_name: String,
    pub role: Role,
    /// At least 12 characters. Never stored or logged; only its argon2id hash is kept.
    #[cfg_attr(feature = "ssr", schema(min_length = 12, max_length = 1024))]
    pub password: String,
}

/// Changes to a user (admins only); absent fields stay as they are. Disabling a user or
/// setting a new password ends their browser sessions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct UserUpdate {
    #[cfg_attr(feature = "ssr", schema(min_length = 1, max_length = 200, pattern = "\\S"))]
    pub display_name: Option<String>,
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    #[cfg_attr(feature = "ssr", schema(min_length = 12, max_length = 1024))]
    pub password: Option<String>,
}

/// A request to create an API token (admins only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct NewToken {
    /// What holds the token, e.g. `wall-screen-3` or `agent-node-7`.
    #[cfg_attr(feature = "ssr", schema(min_length = 1, max_length = 100, pattern = "\\S"))]
    pub name: String,
    #[cfg_attr(feature = "ssr", schema(min_items = 1))]
    pub scopes: Vec<Scope>,
    /// Days until the token stops working (1–3650); absent means it never expires.
    #[cfg_attr(feature = "ssr", schema(minimum = 1, maximum = 3650))]
    pub expires_in_days: Option<u32>,
}

impl NewToken {
    /// Checks the request; the message names the field.
    pub fn check(&self) -> Result<(), String> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err("name: give the token a name of 1-100 characters, without control characters".into());
        }
        if self.scopes.is_empty() {
            return Err("scopes: choose at least one of ingest, read, operate, admin".into());
        }
        if self.expires_in_days.is_some_and(|d| !(1..=3650).contains(&d)) {
            return Err("expires_in_days: between 1 and 3650, or leave it out for no expiry".into());
        }
        Ok(())
    }
}

/// Checks a display name; the message says what to change.
pub fn check_display_name(name: &str) -> Result<(), String> {
    let length = name.trim().chars().count();
    if length == 0 || length > 200 || name.chars().any(char::is_control) {
        return Err("display_name: 1-200 characters, without control characters".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_grant_what_the_roles_below_them_grant() {
        assert!(Role::Viewer.grants(Scope::Read));
        assert!(!Role::Viewer.grants(Scope::Operate));
        assert!(Role::Operator.grants(Scope::Operate) && !Role::Operator.grants(Scope::Admin));
        assert!(Scope::ALL.into_iter().all(|s| Role::Admin.grants(s)));
    }

    #[test]
    fn token_scopes_cover_only_what_they_say_plus_read_for_operate() {
        assert!(!Scope::Ingest.covers(Scope::Read), "an ingest token cannot read");
        assert!(Scope::Operate.covers(Scope::Read));
        assert!(!Scope::Read.covers(Scope::Operate));
        assert!(Scope::ALL.into_iter().all(|s| Scope::Admin.covers(s)));
    }

    #[test]
    fn user_names_follow_the_database_rule() {
        for good in ["alice", "a", "ops-bot_2.x", "0day"] {
            assert!(good.parse::<Username>().is_ok(), "{good}");
        }
        for bad in ["", "Alice", "-x", "a b", "ä", &"x".repeat(64), "robert'); DROP TABLE users;--"] {
            assert!(bad.parse::<Username>().is_err(), "{bad}");
        }
    }

    #[test]
    fn roles_and_scopes_parse_from_their_names_only() {
        assert_eq!("operator".parse::<Role>(), Ok(Role::Operator));
        assert!("Operator".parse::<Role>().is_err());
        assert_eq!("ingest".parse::<Scope>(), Ok(Scope::Ingest));
        assert!(
            "superuser".parse::<Scope>().expect_err("not a scope").to_string().contains("ingest, read, operate, admin")
        );
    }

    #[test]
    fn names_with_control_characters_are_refused() {
        assert!(check_display_name("Ada\0Lovelace").is_err());
        assert!(check_display_name("Ada Lovelace").is_ok());
        let token = NewToken { name: "wall\n3".into(), scopes: vec![Scope::Read], expires_in_days: None };
        assert!(token.check().is_err());
    }

    #[test]
    fn short_passwords_are_refused_with_the_rule() {
        assert!(check_new_password("short").expect_err("too short").contains("12"));
        assert!(check_new_password("correct horse battery").is_ok());
    }
}
