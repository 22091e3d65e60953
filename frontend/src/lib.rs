//! The wasm entry point: `hydrate()` attaches the reactive app to the server-rendered page.
//! Built only for wasm32 (`cargo xtask site`); empty on the host.

/// Called by the generated JS glue once the wasm module has loaded.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
}
