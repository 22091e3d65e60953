//! Security headers on every response (tower-http layers). Pages get a stricter
//! Content-Security-Policy with a per-request nonce from the UI module; these are the defaults
//! for everything else, set only where a handler didn't set its own.

use http::{HeaderName, HeaderValue};
use tower_http::set_header::SetResponseHeaderLayer;

/// The policy for non-page responses (JSON, static files, plain refusal pages).
pub const DEFAULT_CSP: &str =
    "default-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'";

/// The policy for Leptos pages: scripts only from this site or with this response's nonce (the
/// inline hydration script), wasm allowed to compile, inline `style=` for data-driven values.
pub fn page_csp(nonce: &str) -> String {
    format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; \
         form-action 'self'; frame-ancestors 'none'"
    )
}

/// A header set on every response that doesn't already carry it.
pub fn default_header(name: HeaderName, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
}
