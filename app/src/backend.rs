//! What the UI needs from the server, as a trait: the server implements it over its service
//! layer and provides it as Leptos context, so this crate never touches SQL or HTTP clients.

use std::{future::Future, pin::Pin, sync::Arc};

use crate::model::Readiness;

/// A boxed future, because trait objects can't have `async fn` methods yet.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The server-side operations behind the pages' server functions.
pub trait Backend: Send + Sync + 'static {
    /// Checks every dependency now (the same report `/readyz` returns).
    fn readiness(&self) -> BoxFuture<'_, Readiness>;
}

/// The handle stored in Leptos context.
pub type SharedBackend = Arc<dyn Backend>;
