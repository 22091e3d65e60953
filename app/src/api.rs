//! Server functions: thin adapters from the pages to the server's [`Backend`](crate::backend::Backend).

use leptos::prelude::*;

use crate::model::Readiness;

/// The current readiness of opsdeck's stores, checked live on the server.
#[server(prefix = "/_fn")]
pub async fn get_readiness() -> Result<Readiness, ServerFnError> {
    let backend = use_context::<crate::backend::SharedBackend>()
        .ok_or_else(|| ServerFnError::new("the server did not provide its backend to the UI"))?;
    Ok(backend.readiness().await)
}
