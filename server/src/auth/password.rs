//! Password hashing with argon2id (the `argon2` crate's recommended default parameters),
//! off the async threads because it is deliberately slow.

use std::sync::LazyLock;

use anyhow::Context;
use argon2::{
    Argon2,
    password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash},
};

/// A hash of a random password, verified against when the user does not exist, so a login
/// for an unknown name takes as long as one with a wrong password.
static DECOY: LazyLock<String> = LazyLock::new(|| {
    Argon2::default()
        .hash_password(super::secret::random_secret().as_bytes())
        .map(|h| h.to_string())
        .unwrap_or_default()
});

/// Hashes a new password into a PHC string (`$argon2id$v=19$…`).
pub async fn hash(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        Argon2::default().hash_password(password.as_bytes()).map(|h| h.to_string()).map_err(|e| anyhow::anyhow!("{e}"))
    })
    .await
    .context("the password hashing task failed")?
    .context("hashing the password failed")
}

/// Checks a password against a stored hash; `None` (no such user) still costs a full check.
pub async fn verify(password: String, stored: Option<String>) -> bool {
    let known = stored.is_some();
    let outcome = tokio::task::spawn_blocking(move || {
        let stored = stored.unwrap_or_else(|| DECOY.clone());
        PasswordHash::new(&stored)
            .is_ok_and(|hash| Argon2::default().verify_password(password.as_bytes(), &hash).is_ok())
    })
    .await
    .unwrap_or(false);
    known && outcome
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn a_hash_verifies_its_password_and_nothing_else() {
        let stored = super::hash("correct horse battery".into()).await.expect("hashes");
        assert!(stored.starts_with("$argon2id$"));
        assert!(!stored.contains("correct horse"));
        assert!(super::verify("correct horse battery".into(), Some(stored.clone())).await);
        assert!(!super::verify("wrong horse battery".into(), Some(stored)).await);
        assert!(!super::verify("anything".into(), None).await, "no user, no entry");
    }
}
